"""Root URL configuration: API, schema, console, health, metrics."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from controlplane import health, metrics
from rooms import webhooks

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:home", permanent=False)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script from a URL, not inline (Content Security Policy).
    path(
        "api/v1/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", template_name="controlplane/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/v1/", include("licensing.api.urls")),
    path("api/v1/", include("scim.api")),
    path("api/v1/", include("media_nodes.api")),
    path("api/v1/", include("rooms.api")),
    path("api/v1/", include("usage.api")),
    path("api/v1/", include("usage.api_exports")),
    path("oidc/", include("accounts.oidc.urls")),
    path("hooks/livekit/", webhooks.livekit_webhook, name="livekit-webhook"),
    path("scim/v2/", include("scim.urls")),
    path("console/", include("console.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

handler404 = "controlplane.api.not_found"
# A database outage answers 503 with Retry-After, in the caller's format.
handler500 = "controlplane.outage.server_error"
