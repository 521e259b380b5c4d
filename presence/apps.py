from django.apps import AppConfig


class PresenceConfig(AppConfig):
    name = "presence"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.selectors import load_with_token
        from presence.models import Presence
        from presence.selectors import ROW_WITH_TOKEN

        # Every send reads the sender's presence (presence.actions.record_activity): with the token.
        load_with_token(Presence, ROW_WITH_TOKEN)
