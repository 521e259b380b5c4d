"""Presence routes, mounted under /_matrix/client/{v3,r0}/ by matrixsrv/urls.py."""

from django.urls import path

from presence import views

urlpatterns = [
    path("presence/<str:user_id>/status", views.PresenceStatusView.as_view(), name="presence_status"),
]
