"""Room routes, mounted under /_matrix/client/{v3,r0}/."""

from django.urls import path

from rooms import profile_views, views

urlpatterns = [
    path("createRoom", views.CreateRoomView.as_view(), name="create_room"),
    path("join/<str:room_id_or_alias>", views.JoinRoomView.as_view(), name="join_room"),
    path("knock/<str:room_id_or_alias>", views.KnockRoomView.as_view(), name="knock_room"),
    path("rooms/<str:room_id>/join", views.JoinRoomByIdView.as_view(), name="join_room_by_id"),
    path("rooms/<str:room_id>/invite", views.InviteView.as_view(), name="invite_user"),
    path("rooms/<str:room_id>/leave", views.LeaveView.as_view(), name="leave_room"),
    path("rooms/<str:room_id>/forget", views.ForgetView.as_view(), name="forget_room"),
    path("rooms/<str:room_id>/kick", views.KickView.as_view(), name="kick"),
    path("rooms/<str:room_id>/ban", views.BanView.as_view(), name="ban"),
    path("rooms/<str:room_id>/unban", views.UnbanView.as_view(), name="unban"),
    path("rooms/<str:room_id>/members", views.MembersView.as_view(), name="get_members_by_room"),
    path("rooms/<str:room_id>/joined_members", views.JoinedMembersView.as_view(), name="joined_members"),
    path("rooms/<str:room_id>/aliases", views.RoomAliasesView.as_view(), name="room_aliases"),
    path("joined_rooms", views.JoinedRoomsView.as_view(), name="joined_rooms"),
    path("directory/room/<str:room_alias>", views.RoomAliasView.as_view(), name="room_alias"),
    path("directory/list/room/<str:room_id>", views.RoomDirectoryVisibilityView.as_view(),
         name="room_directory_visibility"),
    path("publicRooms", views.PublicRoomsView.as_view(), name="public_rooms"),
    # Profiles and the user directory (rooms/profile_views.py).
    path("profile/<str:user_id>", profile_views.ProfileView.as_view(), name="profile"),
    path("profile/<str:user_id>/displayname", profile_views.ProfileFieldView.as_view(field="displayname"),
         name="profile_displayname"),
    path("profile/<str:user_id>/avatar_url", profile_views.ProfileFieldView.as_view(field="avatar_url"),
         name="profile_avatar_url"),
    path("user_directory/search", profile_views.UserDirectorySearchView.as_view(), name="user_directory_search"),
]
