"""Account routes, mounted under /_matrix/client/{v3,r0}/ by matrixsrv/urls.py."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("register", views.RegisterView.as_view(), name="register"),
    path("register/available", views.RegisterAvailableView.as_view(), name="register_available"),
    path("login", views.LoginView.as_view(), name="login"),
    path("account/whoami", views.WhoamiView.as_view(), name="whoami"),
    path("logout", views.LogoutView.as_view(), name="logout"),
    path("logout/all", views.LogoutAllView.as_view(), name="logout_all"),
    path("account/password", views.ChangePasswordView.as_view(), name="change_password"),
    path("account/deactivate", views.DeactivateAccountView.as_view(), name="deactivate_account"),
    path("account/3pid", views.ThreePidsView.as_view(), name="account_3pid"),
    path("devices", views.DevicesView.as_view(), name="devices"),
    # <path:>: device IDs are opaque and may contain "/" (which arrives percent-decoded).
    path("devices/<path:device_id>", views.DeviceView.as_view(), name="device"),
    path("delete_devices", views.DeleteDevicesView.as_view(), name="delete_devices"),
]

# Routes the spec defines under /_matrix/client/v1/ only.
v1_urlpatterns = [
    path(
        "register/m.login.registration_token/validity",
        views.RegistrationTokenValidityView.as_view(),
        name="registration_token_validity",
    ),
]
