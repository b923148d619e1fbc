"""Rooms: the meetings agents create, share and join."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from controlplane.models import BaseModel


class Room(BaseModel):
    """A meeting room, reachable at a readable slug such as ``abc-defg-hij``."""

    class Access(models.TextChoices):
        PUBLIC = "public", _("Anyone with the link")
        MINISTRY = "ministry", _("Agents of the ministry")
        INVITED = "invited", _("Invited agents only")

    slug = models.SlugField(_("address"), max_length=16, unique=True)
    name = models.CharField(_("name"), max_length=200)
    owner = models.ForeignKey(
        "accounts.Agent", on_delete=models.PROTECT, related_name="owned_rooms"
    )
    ministry = models.ForeignKey(
        "accounts.Ministry", on_delete=models.PROTECT, related_name="rooms"
    )
    access = models.CharField(_("access"), max_length=8, choices=Access, default=Access.MINISTRY)
    expected_size = models.PositiveIntegerField(_("expected participants"), default=10)
    invitees = models.ManyToManyField("accounts.Agent", related_name="invited_rooms", blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(access__in=["public", "ministry", "invited"]), name="room_access_valid"
            ),
            models.CheckConstraint(
                condition=Q(expected_size__gte=2) & Q(expected_size__lte=1000),
                name="room_expected_size_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class WebhookReceipt(BaseModel):
    """One node webhook taken into account, by its event id: LiveKit retries a
    delivery until it is acknowledged, so a replay must find its receipt and stop."""

    event_id = models.CharField(max_length=64, unique=True)
    node = models.ForeignKey(
        "media_nodes.MediaNode",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="webhook_receipts",
    )
    event_type = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["received_at"], name="webhook_received")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class MeetingSession(BaseModel):
    """One occurrence of a live meeting on a node, from ``room_started`` (or its first
    participant) to ``room_finished``. LiveKit gives each occurrence its own room
    sid, so a sid names exactly one session; rooms we do not know are kept by name."""

    room = models.ForeignKey(
        Room, on_delete=models.SET_NULL, null=True, blank=True, related_name="meetings"
    )
    room_name = models.CharField(_("room name"), max_length=255)
    ministry = models.ForeignKey(
        "accounts.Ministry",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="meetings",
    )
    node = models.ForeignKey(
        "media_nodes.MediaNode",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="meetings",
    )
    livekit_sid = models.CharField(_("LiveKit room id"), max_length=64, unique=True)
    started_at = models.DateTimeField(_("started at"))
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    peak_participants = models.PositiveIntegerField(_("peak participants"), default=0)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["ministry", "started_at"], name="meeting_ministry_started"),
            models.Index(fields=["started_at"], name="meeting_started"),
            models.Index(fields=["updated_at"], name="meeting_updated"),
            # The roll-up reads the meetings started or ended in its range.
            models.Index(fields=["ended_at"], name="meeting_ended"),
            models.Index(
                fields=["node"], condition=Q(ended_at__isnull=True), name="meeting_open_node"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.room_name} ({self.livekit_sid})"


class ParticipantSession(BaseModel):
    """One connection of a participant to a meeting, from join to leave.

    ``participant_sid`` is LiveKit's id of the connection: a joined and a left event
    meet on it whatever order they arrive in, and a reconnection is a new session.
    ``ministry`` is the agent's own (meetings cross ministries), for usage by ministry.
    """

    meeting = models.ForeignKey(
        MeetingSession, on_delete=models.CASCADE, related_name="participants"
    )
    agent = models.ForeignKey(
        "accounts.Agent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="participant_sessions",
    )
    ministry = models.ForeignKey(
        "accounts.Ministry",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="participant_sessions",
    )
    identity = models.CharField(_("identity"), max_length=255)
    # Snapshot of the agent's unit when they joined: usage by unit survives both later
    # moves and the pseudonymisation of the session.
    organizational_unit = models.CharField(_("organisational unit"), max_length=255, blank=True)
    pseudonymised_at = models.DateTimeField(_("pseudonymised at"), null=True, blank=True)
    participant_sid = models.CharField(_("LiveKit participant id"), max_length=255)
    joined_at = models.DateTimeField(_("joined at"))
    left_at = models.DateTimeField(_("left at"), null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(_("duration (seconds)"), null=True, blank=True)

    class Meta:
        ordering = ["-joined_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["meeting", "participant_sid"], name="one_session_per_connection"
            ),
        ]
        indexes = [
            models.Index(fields=["ministry", "joined_at"], name="participant_ministry_joined"),
            models.Index(fields=["agent", "joined_at"], name="participant_agent_joined"),
            # The roll-up reads sessions by day, and the sessions changed since its
            # watermark (late webhooks included).
            models.Index(fields=["joined_at"], name="participant_joined"),
            models.Index(fields=["updated_at"], name="participant_updated"),
            # ... and the stays that end within or after it (for a recent range, the
            # few that left since its start).
            models.Index(fields=["left_at"], name="participant_left"),
            models.Index(
                fields=["meeting"], condition=Q(left_at__isnull=True), name="participant_open"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identity} in {self.meeting_id}"
