"""Media nodes (LiveKit SFUs) and the allocations of live rooms to them."""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from controlplane.models import BaseModel
from media_nodes import crypto


class MediaNode(BaseModel):
    """One SFU. ``state`` is what operators decide; ``is_up`` is what probes see.

    ``reserved_participants`` is the sum of the expected sizes of its live
    allocations, moved in the same transaction as each allocation, so placement
    reads a load that is never stale. ``observed_participants`` comes from the
    node itself (webhooks and reconciliation).
    """

    class State(models.TextChoices):
        ACTIVE = "active", _("Active")
        CORDONED = "cordoned", _("Cordoned")
        DRAINING = "draining", _("Draining")

    name = models.SlugField(_("name"), max_length=64, unique=True)
    url = models.URLField(_("LiveKit URL"), max_length=255)
    api_key = models.CharField(_("API key"), max_length=128)
    api_secret_encrypted = models.TextField(editable=False)
    region = models.SlugField(_("region"), max_length=32)
    tags = models.JSONField(_("tags"), default=list, blank=True)
    capacity = models.PositiveIntegerField(_("capacity (participants)"))
    state = models.CharField(_("state"), max_length=10, choices=State, default=State.ACTIVE)
    drain_deadline = models.DateTimeField(_("drain deadline"), null=True, blank=True)
    is_up = models.BooleanField(_("up"), default=True)
    last_heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    down_since = models.DateTimeField(null=True, blank=True)
    reserved_participants = models.IntegerField(default=0)
    observed_participants = models.IntegerField(default=0)

    class Meta:
        ordering = ["region", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["active", "cordoned", "draining"]),
                name="media_node_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(reserved_participants__gte=0), name="media_node_reserved_not_negative"
            ),
            # The database itself refuses an overbooked node.
            models.CheckConstraint(
                condition=Q(reserved_participants__lte=F("capacity")),
                name="media_node_never_overbooked",
            ),
        ]
        indexes = [models.Index(fields=["state", "is_up", "region"])]

    def __str__(self) -> str:
        return self.name

    @property
    def api_secret(self) -> str:
        return crypto.decrypt(self.api_secret_encrypted)

    @api_secret.setter
    def api_secret(self, clear: str) -> None:
        if not clear:
            raise ValidationError({"api_secret": _("The API secret is required.")})
        self.api_secret_encrypted = crypto.encrypt(clear)

    @property
    def health(self) -> str:
        return "up" if self.is_up else "down"

    @property
    def load(self) -> int:
        return max(self.reserved_participants, self.observed_participants)


class Allocation(BaseModel):
    """A room placed on a node, from placement until it is closed (with its reason)."""

    class Reason(models.TextChoices):
        FINISHED = "finished", _("Meeting finished")
        NODE_DOWN = "node_down", _("Node down")
        DRAINED = "drained", _("Node drained")
        VANISHED = "vanished", _("Room vanished from the node")
        NODE_REFUSED = "node_refused", _("Node refused the room")
        ROOM_DELETED = "room_deleted", _("Room deleted")

    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="allocations")
    node = models.ForeignKey(MediaNode, on_delete=models.PROTECT, related_name="allocations")
    reserved = models.PositiveIntegerField()
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=16, choices=Reason, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["room"], condition=Q(closed_at__isnull=True), name="one_live_allocation"
            ),
        ]
        indexes = [
            models.Index(
                fields=["node"], condition=Q(closed_at__isnull=True), name="allocation_live_node"
            )
        ]

    def __str__(self) -> str:
        return f"{self.room_id} on {self.node_id}"


class PlacementRequest(models.Model):
    """A join asked for a room to be placed and no answer has been given yet.

    The request itself travels through Redis (``media_nodes.queueing``); this row is
    its durable copy, written before the push and deleted when the room is placed or
    refused. A Redis restart or a drainer killed mid-batch loses the Redis copy; beat's
    ``room_placement_sweep`` finds the rows left over and asks again.
    """

    room = models.OneToOneField(
        "rooms.Room", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    region = models.CharField(max_length=32, blank=True)
    requested_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["requested_at"], name="placement_request_age")]

    def __str__(self) -> str:
        return f"{self.room_id} since {self.requested_at:%H:%M:%S}"
