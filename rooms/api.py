"""Rooms API: create, list, rename, delete, invite, and join (the node and a LiveKit
access token for it)."""

import time

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from accounts.models import Agent
from audit.actor import Actor
from controlplane.api import SLUG_LOOKUP
from media_nodes import queueing
from media_nodes.allocations import allocation_live
from media_nodes.placement import NoNodeAvailable
from rooms import selectors, services
from rooms.models import Room


class RoomSerializer(serializers.ModelSerializer):
    owner = serializers.EmailField(source="owner.email", read_only=True)
    ministry = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Room
        fields = ["id", "slug", "name", "owner", "ministry", "access", "expected_size"]
        fields += ["created_at"]
        read_only_fields = ["id", "slug", "owner", "ministry", "created_at"]


class InviteSerializer(serializers.Serializer):
    emails = serializers.ListField(child=serializers.EmailField(), min_length=1, max_length=500)


class JoinSerializer(serializers.Serializer):
    region = serializers.SlugField(max_length=32, required=False)


JoinAnswer = inline_serializer(
    "JoinAnswer",
    {
        "room": serializers.CharField(),
        "node_url": serializers.CharField(),
        "token": serializers.CharField(),
        "expires_at": serializers.DateTimeField(),
    },
)


JoinPending = inline_serializer(
    "JoinPending",
    {"detail": serializers.CharField(), "poll": serializers.URLField()},
)


class IsAgent(permissions.BasePermission):
    """Rooms are the agents' own: sessions only, never an API token."""

    message = "Rooms are used by agents, with their own session."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return (
            request.method in permissions.SAFE_METHODS or getattr(user, "api_token", None) is None
        )


class RoomViewSet(
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.ReadOnlyModelViewSet,
):
    serializer_class = RoomSerializer
    lookup_field = "slug"
    lookup_value_regex = SLUG_LOOKUP
    permission_classes = [IsAgent]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Room.objects.none()
        return selectors.room_list(user=self.request.user)

    def perform_create(self, serializer):
        serializer.instance = services.room_create(
            actor=Actor.from_request(self.request), **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.room_update(
            actor=Actor.from_request(self.request),
            room=serializer.instance,
            **serializer.validated_data,
        )

    def perform_destroy(self, instance):
        services.room_delete(actor=Actor.from_request(self.request), room=instance)

    @extend_schema(request=InviteSerializer, responses=RoomSerializer)
    @action(detail=True, methods=["post"])
    def invite(self, request, slug=None):
        """Invite agents by email (agents of any ministry)."""
        room = self.get_object()
        data = InviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        emails = sorted({e.lower() for e in data.validated_data["emails"]})
        agents = list(Agent.objects.filter(email__in=emails))
        unknown = set(emails) - {a.email for a in agents}
        if unknown:
            raise serializers.ValidationError(
                {"emails": [_("Unknown agents: %s") % ", ".join(sorted(unknown))]}
            )
        services.room_invite(actor=Actor.from_request(request), room=room, agents=agents)
        return Response(RoomSerializer(room).data)

    @extend_schema(
        request=JoinSerializer,
        responses={
            200: JoinAnswer,
            202: OpenApiResponse(JoinPending, description="Being placed: call `poll` again."),
            403: OpenApiResponse(description="Not invited, or not an agent's own session."),
            404: OpenApiResponse(description="No such room."),
            503: OpenApiResponse(description="No media node can take the meeting now."),
        },
    )
    @action(detail=True, methods=["post"])
    def join(self, request, slug=None):
        """Join: the room's node and a LiveKit token for it. The room is placed on a
        node first if it is not live; if placing takes longer than JOIN_WAIT_SECONDS,
        answers 202 with the URL to call again; 503 with Retry-After when no node can
        host it or placement is unavailable for a moment (the request is kept)."""
        if getattr(request.user, "api_token", None) is not None:
            raise PermissionDenied("Only agents join meetings.")
        room = get_object_or_404(Room, slug=slug, deleted_at__isnull=True)
        if not services.can_join(request.user, room):
            raise PermissionDenied(_("You are not invited to this meeting."))
        data = JoinSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        allocation = allocation_live(room_id=room.pk)
        if allocation is None:
            # Redis unreachable: QueueUnavailable (503, the request kept: beat asks again
            # once Redis is back, and the agent's next call finds the room placed).
            outcome = self._place(room, data.validated_data.get("region"))
            if outcome.get("error") == "no_node":  # 503 no_node, from the error table
                raise NoNodeAvailable(
                    size=room.expected_size, tags=room.ministry.residency_tags or []
                )
            allocation = allocation_live(room_id=room.pk)
        if allocation is None:
            poll = request.build_absolute_uri()
            return Response(
                {"detail": _("The meeting is being prepared; call again."), "poll": poll},
                status=status.HTTP_202_ACCEPTED,
                headers={"Retry-After": "1"},
            )
        join = services.join_token(agent=request.user, room=room, allocation=allocation)
        return Response(
            {
                "room": room.slug,
                "node_url": join.node_url,
                "token": join.token,
                "expires_at": join.expires_at,
            }
        )

    @staticmethod
    def _place(room, region) -> dict:
        """Ask for the room to be placed and wait for the outcome (coalesced requests:
        see media_nodes.queueing); {} when it takes longer than JOIN_WAIT_SECONDS."""
        nonce = queueing.request(room.pk, region)
        if isinstance(nonce, dict):  # placed inline (no broker: the demo)
            return nonce
        deadline = time.monotonic() + settings.JOIN_WAIT_SECONDS
        pause = 0.005
        while time.monotonic() < deadline:
            outcome = queueing.outcome(nonce)
            if outcome == "placed":
                return {"placed": True}
            if outcome and outcome.startswith("no_node:"):
                return {"error": "no_node", "detail": outcome.removeprefix("no_node:")}
            if outcome:  # "gone" or "failed": the answer below says what to do
                return {}
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)
        return {}


router = SimpleRouter()
router.register("rooms", RoomViewSet, basename="room")
urlpatterns = router.urls
