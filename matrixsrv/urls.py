"""URL routes. Every client route answers under /_matrix/client/v3/ and the legacy /r0/ prefix."""

from django.contrib import admin
from django.urls import include, path, re_path

from accounts import account_data_urls
from accounts import urls as accounts_urls
from accounts.fallback import login_fallback
from e2ee import urls as e2ee_urls
from ephemeral import urls as ephemeral_urls
from events import urls as events_urls
from moderation import urls as moderation_urls
from presence import urls as presence_urls
from push import urls as push_urls
from rooms import urls as rooms_urls
from sync import urls as sync_urls
from matrixsrv import health, metrics_views, views

handler404 = "matrixsrv.exception_handler.handler404"
handler500 = "matrixsrv.exception_handler.handler500"

client_patterns = [
    *accounts_urls.urlpatterns,
    *account_data_urls.urlpatterns,
    *rooms_urls.urlpatterns,
    *events_urls.urlpatterns,
    *sync_urls.urlpatterns,
    *ephemeral_urls.urlpatterns,
    *presence_urls.urlpatterns,
    *push_urls.urlpatterns,
    *e2ee_urls.urlpatterns,
    *moderation_urls.urlpatterns,
    path("capabilities", views.CapabilitiesView.as_view(), name="capabilities"),
    path("voip/turnServer", views.TurnServerView.as_view(), name="turn_server"),
    path("thirdparty/protocols", views.ThirdPartyProtocolsView.as_view(), name="thirdparty_protocols"),
    path("thirdparty/protocol/<str:protocol>", views.ThirdPartyProtocolView.as_view(),
         name="thirdparty_protocol"),
    path("thirdparty/location", views.ThirdPartyReverseLookupView.as_view(param="alias"),
         name="thirdparty_locations"),
    path("thirdparty/location/<str:protocol>", views.ThirdPartyLookupView.as_view(),
         name="thirdparty_location"),
    path("thirdparty/user", views.ThirdPartyReverseLookupView.as_view(param="userid"),
         name="thirdparty_users"),
    path("thirdparty/user/<str:protocol>", views.ThirdPartyLookupView.as_view(), name="thirdparty_user"),
    path("login/fallback", login_fallback, name="login_fallback"),
]

urlpatterns = [
    path("_matrix/client/versions", views.versions, name="versions"),
    path(".well-known/matrix/client", views.well_known_client, name="well_known_client"),
    path("_matrix/client/v3/", include((client_patterns, "client"), namespace="v3")),
    path("_matrix/client/r0/", include((client_patterns, "client"), namespace="r0")),
    path("_matrix/client/v3/", include((moderation_urls.v3_urlpatterns, "client_v3_only"), namespace="v3_only")),
    path("_matrix/client/v1/", include((accounts_urls.v1_urlpatterns, "client_v1"), namespace="v1")),
    path("_matrix/client/v1/", include((events_urls.v1_urlpatterns, "client_v1_events"), namespace="v1_events")),
    path("_matrix/static/client/login/", login_fallback, name="static_login_fallback"),
    path("_matrix/static/client/login", login_fallback),  # also without the slash: never a redirect
    path("admin/", admin.site.urls),
    # Operations, outside /_matrix (matrixsrv/health.py, matrixsrv/metrics_views.py; README "Deployment")
    path("health", health.health, name="health"),
    path("ready", health.ready, name="ready"),
    path("metrics", metrics_views.metrics_view, name="metrics"),
    # Everything else under /_matrix, "/_matrix" itself included: JSON 404, so CommonMiddleware's
    # APPEND_SLASH never finds a "better" URL to redirect to.
    re_path(r"^_matrix(?:/(?P<rest>.*))?$", views.unrecognized),
]
