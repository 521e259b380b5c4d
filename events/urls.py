"""Event routes, mounted under /_matrix/client/{v3,r0}/."""

from django.urls import path

from events import timeline_views, views

urlpatterns = [
    path("rooms/<str:room_id>/send/<str:event_type>/<str:txn_id>", views.SendMessageEventView.as_view(),
         name="send_message_event"),
    path("rooms/<str:room_id>/send/<str:event_type>", views.SendMessageEventNoTxnView.as_view(),
         name="send_message_event_no_txn"),
    path("rooms/<str:room_id>/state", views.RoomStateView.as_view(), name="room_state"),
    path("rooms/<str:room_id>/state/<str:event_type>", views.RoomStateEventView.as_view(), name="room_state_event"),
    path("rooms/<str:room_id>/state/<str:event_type>/", views.RoomStateEventView.as_view(),
         name="room_state_event_slash"),
    path("rooms/<str:room_id>/state/<str:event_type>/<path:state_key>", views.RoomStateEventView.as_view(),
         name="room_state_event_key"),
    path("rooms/<str:room_id>/redact/<str:event_id>/<str:txn_id>", views.RedactEventView.as_view(),
         name="redact_event"),
    path("rooms/<str:room_id>/redact/<str:event_id>", views.RedactEventView.as_view(), name="redact_event_no_txn"),
]

# Reading history (events/timeline_views.py).
urlpatterns += [
    path("rooms/<str:room_id>/messages", timeline_views.RoomMessagesView.as_view(), name="get_room_events"),
    path("rooms/<str:room_id>/context/<str:event_id>", timeline_views.EventContextView.as_view(),
         name="get_event_context"),
    path("rooms/<str:room_id>/event/<str:event_id>", timeline_views.RoomEventView.as_view(),
         name="get_one_room_event"),
]

# Routes the spec defines under /_matrix/client/v1/ only.
v1_urlpatterns = [
    path("rooms/<str:room_id>/timestamp_to_event", timeline_views.TimestampToEventView.as_view(),
         name="get_event_by_timestamp"),
]
