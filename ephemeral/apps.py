from django.apps import AppConfig


class EphemeralConfig(AppConfig):
    name = "ephemeral"
    default_auto_field = "django.db.models.BigAutoField"
