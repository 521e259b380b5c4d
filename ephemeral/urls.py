"""Typing, receipt and read-marker routes, mounted under /_matrix/client/{v3,r0}/ by matrixsrv/urls.py."""

from django.urls import path

from ephemeral import views

urlpatterns = [
    path("rooms/<str:room_id>/typing/<str:user_id>", views.TypingView.as_view(), name="set_typing"),
    path(
        "rooms/<str:room_id>/receipt/<str:receipt_type>/<str:event_id>",
        views.ReceiptView.as_view(),
        name="post_receipt",
    ),
    path("rooms/<str:room_id>/read_markers", views.ReadMarkersView.as_view(), name="set_read_markers"),
]
