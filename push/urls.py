"""Push routes, mounted under /_matrix/client/{v3,r0}/.

Rule IDs are single path segments (``<str:...>``) for ``/enabled`` and ``/actions``; the rule route
itself takes ``<path:...>`` and comes last, so a PUT of an ID with ``/`` (``%2F`` arrives decoded)
reaches the view and gets the spec's 400 rather than an unrecognized route.
"""

from django.urls import path

from push import views

urlpatterns = [
    path("pushrules/", views.PushRulesView.as_view(), name="get_push_rules"),
    path("pushrules", views.PushRulesView.as_view(), name="get_push_rules_no_slash"),
    path("pushrules/global/", views.PushRulesGlobalView.as_view(), name="get_push_rules_global"),
    path("pushrules/global", views.PushRulesGlobalView.as_view(), name="get_push_rules_global_no_slash"),
    path("pushrules/global/<str:kind>/", views.PushRulesOfKindView.as_view(), name="get_push_rules_of_kind"),
    path(
        "pushrules/global/<str:kind>/<str:rule_id>/enabled",
        views.PushRuleEnabledView.as_view(),
        name="set_push_rule_enabled",
    ),
    path(
        "pushrules/global/<str:kind>/<str:rule_id>/actions",
        views.PushRuleActionsView.as_view(),
        name="set_push_rule_actions",
    ),
    path("pushrules/global/<str:kind>/<path:rule_id>", views.PushRuleView.as_view(), name="set_push_rule"),
    path("pushers", views.PushersView.as_view(), name="get_pushers"),
    path("pushers/set", views.SetPusherView.as_view(), name="post_pusher"),
    path("notifications", views.NotificationsView.as_view(), name="get_notifications"),
]
