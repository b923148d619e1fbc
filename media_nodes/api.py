"""Operators' API of media nodes: register (credentials checked against the node),
cordon, drain, enable, remove. API secrets are write-only: never returned."""

from django.db.models import Count, Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from accounts.access import access_for
from audit.actor import Actor
from controlplane.api import SLUG_LOOKUP
from media_nodes import services
from media_nodes.models import MediaNode


class MediaNodeSerializer(serializers.ModelSerializer):
    health = serializers.CharField(read_only=True)
    live_rooms = serializers.IntegerField(read_only=True)

    class Meta:
        model = MediaNode
        fields = [
            "id",
            "name",
            "url",
            "api_key",
            "region",
            "tags",
            "capacity",
            "state",
            "drain_deadline",
            "health",
            "last_heartbeat_at",
            "consecutive_failures",
            "reserved_participants",
            "observed_participants",
            "live_rooms",
            "created_at",
        ]
        read_only_fields = fields


class MediaNodeCreateSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    url = serializers.URLField(max_length=255)
    api_key = serializers.CharField(max_length=128)
    api_secret = serializers.CharField(max_length=512, write_only=True)
    region = serializers.SlugField(max_length=32)
    tags = serializers.ListField(child=serializers.CharField(max_length=32), default=list)
    capacity = serializers.IntegerField(min_value=1, max_value=100_000)


class DrainSerializer(serializers.Serializer):
    deadline_minutes = serializers.IntegerField(
        min_value=0, max_value=7 * 24 * 60, required=False, allow_null=True
    )


class MediaNodeViewSet(mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Media nodes: operators only (they hold the platform's keys)."""

    serializer_class = MediaNodeSerializer
    lookup_field = "name"
    lookup_value_regex = SLUG_LOOKUP
    filterset_fields = ["state", "region", "is_up"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return MediaNode.objects.none()
        if not access_for(self.request.user).operator:
            raise PermissionDenied("Only platform operators manage media nodes.")
        return MediaNode.objects.annotate(
            live_rooms=Count("allocations", filter=Q(allocations__closed_at__isnull=True))
        )

    def _actor(self):
        return Actor.from_request(self.request)

    @extend_schema(request=MediaNodeCreateSerializer, responses={201: MediaNodeSerializer})
    def create(self, request):
        self.get_queryset()  # operators only
        data = MediaNodeCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = services.node_add(actor=self._actor(), **data.validated_data)
        node.live_rooms = 0
        return Response(MediaNodeSerializer(node).data, status=status.HTTP_201_CREATED)

    def _state(self, state, deadline=None):
        node = services.node_set_state(
            actor=self._actor(), node=self.get_object(), state=state, deadline=deadline
        )
        return Response(MediaNodeSerializer(self.get_queryset().get(pk=node.pk)).data)

    @extend_schema(request=None, responses=MediaNodeSerializer)
    @action(detail=True, methods=["post"])
    def cordon(self, request, name=None):
        """No new rooms; live ones stay."""
        return self._state(MediaNode.State.CORDONED)

    @extend_schema(request=DrainSerializer, responses=MediaNodeSerializer)
    @action(detail=True, methods=["post"])
    def drain(self, request, name=None):
        """No new rooms; released when empty; rooms still there at the deadline move."""
        data = DrainSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        minutes = data.validated_data.get("deadline_minutes")
        deadline = None if minutes is None else timezone.now() + timezone.timedelta(minutes=minutes)
        return self._state(MediaNode.State.DRAINING, deadline)

    @extend_schema(request=None, responses=MediaNodeSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request, name=None):
        """Take new rooms again."""
        return self._state(MediaNode.State.ACTIVE)

    def destroy(self, request, name=None):
        """Remove the node; refused while it hosts live rooms."""
        services.node_remove(actor=self._actor(), node=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


router = SimpleRouter()
router.register("media-nodes", MediaNodeViewSet, basename="media-node")
urlpatterns = router.urls
