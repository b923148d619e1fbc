"""Routes of the licensing API."""

from rest_framework.routers import SimpleRouter

from licensing.api.views import LicencePoolViewSet

router = SimpleRouter()
router.register("licence-pools", LicencePoolViewSet, basename="licence-pool")
urlpatterns = router.urls
