"""Routes of the accounts API."""

from rest_framework.routers import SimpleRouter

from accounts.api.views import (
    AgentImportJobViewSet,
    AgentViewSet,
    ApiTokenViewSet,
    MinistryViewSet,
    OnboardingViewSet,
    RoleGrantViewSet,
)

router = SimpleRouter()
router.register("ministries", MinistryViewSet, basename="ministry")
router.register("agents", AgentViewSet, basename="agent")
router.register("role-grants", RoleGrantViewSet, basename="role-grant")
router.register("api-tokens", ApiTokenViewSet, basename="api-token")
router.register("agent-imports", AgentImportJobViewSet, basename="agent-import")
router.register("onboardings", OnboardingViewSet, basename="onboarding")
urlpatterns = router.urls
