"""Push routes, mounted under /_matrix/client/{v3,r0}/."""

from django.urls import path

from push import views

urlpatterns = [
    path("pushrules/", views.PushRulesView.as_view(), name="get_push_rules"),
    path("pushrules", views.PushRulesView.as_view(), name="get_push_rules_no_slash"),
]
