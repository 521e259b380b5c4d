"""Report routes. The event report existed in r0 and is mounted with the client routes under both
prefixes; the room and user reports are newer (v1.13, v1.14) and answer under /v3/ only."""

from django.urls import path

from moderation import views

urlpatterns = [
    path("rooms/<str:room_id>/report/<str:event_id>", views.ReportEventView.as_view(), name="report_event"),
]

v3_urlpatterns = [
    path("rooms/<str:room_id>/report", views.ReportRoomView.as_view(), name="report_room"),
    path("users/<str:user_id>/report", views.ReportUserView.as_view(), name="report_user"),
]
