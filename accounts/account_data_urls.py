"""Account data and room tag routes, mounted under /_matrix/client/{v3,r0}/ by matrixsrv/urls.py.

``<str:>`` segments: user IDs, room IDs, types and tags arrive percent-decoded and contain no "/"
(a type or tag with an encoded "/" is not routable, as in Synapse)."""

from django.urls import path

from accounts import account_data_views as views

urlpatterns = [
    path("user/<str:user_id>/account_data/<str:type>", views.AccountDataView.as_view(), name="account_data"),
    path(
        "user/<str:user_id>/rooms/<str:room_id>/account_data/<str:type>",
        views.RoomAccountDataView.as_view(),
        name="room_account_data",
    ),
    path("user/<str:user_id>/rooms/<str:room_id>/tags", views.RoomTagsView.as_view(), name="room_tags"),
    path(
        "user/<str:user_id>/rooms/<str:room_id>/tags/<str:tag>", views.RoomTagView.as_view(), name="room_tag"
    ),
]
