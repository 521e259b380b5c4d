"""Stored sync filters (POST /user/{userId}/filter)."""

from __future__ import annotations

from django.db import models


class Filter(models.Model):
    """A filter a client uploaded. ``filter_id`` given to clients is the row's pk as a string (never
    starting with "{", so /sync can tell an ID from inline JSON)."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="filters")
    definition = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

