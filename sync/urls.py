"""Sync routes, mounted under /_matrix/client/{v3,r0}/."""

from django.urls import path

from sync import views

urlpatterns = [
    path("sync", views.sync_view, name="sync"),
    path("user/<str:user_id>/filter", views.CreateFilterView.as_view(), name="define_filter"),
    path("user/<str:user_id>/filter/<str:filter_id>", views.GetFilterView.as_view(), name="get_filter"),
]
