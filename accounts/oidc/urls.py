"""Routes of the relying party under /oidc/ (names as mozilla-django-oidc expects)."""

from django.urls import path

from accounts.oidc import views

urlpatterns = [
    path("authenticate/", views.ProConnectLoginView.as_view(), name="oidc_authentication_init"),
    path("callback/", views.ProConnectCallbackView.as_view(), name="oidc_authentication_callback"),
    path("logout/", views.logout_view, name="oidc_logout"),
    path("logout/callback/", views.logout_callback, name="oidc_logout_callback"),
]
