"""E2EE routes, mounted under /_matrix/client/{v3,r0}/."""

from django.urls import path

from e2ee import views

urlpatterns = [
    path("keys/upload", views.KeysUploadView.as_view(), name="keys_upload"),
    path("keys/query", views.KeysQueryView.as_view(), name="keys_query"),
    path("keys/claim", views.KeysClaimView.as_view(), name="keys_claim"),
    path("keys/changes", views.KeysChangesView.as_view(), name="keys_changes"),
    path("keys/device_signing/upload", views.DeviceSigningUploadView.as_view(), name="device_signing_upload"),
    path("keys/signatures/upload", views.SignaturesUploadView.as_view(), name="signatures_upload"),
    path("room_keys/version", views.RoomKeysVersionView.as_view(), name="room_keys_version"),
    path(
        "room_keys/version/<str:version>",
        views.RoomKeysVersionDetailView.as_view(),
        name="room_keys_version_detail",
    ),
    path("room_keys/keys", views.RoomKeysView.as_view(), name="room_keys"),
    path("room_keys/keys/<str:room_id>", views.RoomKeysRoomView.as_view(), name="room_keys_room"),
    path(
        "room_keys/keys/<str:room_id>/<str:session_id>",
        views.RoomKeysSessionView.as_view(),
        name="room_keys_session",
    ),
    path(
        "sendToDevice/<str:event_type>/<str:txn_id>", views.SendToDeviceView.as_view(), name="send_to_device"
    ),
]
