"""What LiveKit's webhook events do: meeting and participant sessions, observed load,
and released allocations.

Each event is claimed by its id in the transaction that applies it (insert-or-ignore),
so a replay, even one racing the first delivery, is applied once; a participant's
join and leave meet on LiveKit's connection id whatever their order, and observed load
moves only when a participant session opens or closes. ``rooms.webhooks`` checks the
signature before anything here runs.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from livekit.protocol.webhook import WebhookEvent

from accounts.models import Agent
from media_nodes.allocations import allocation_live_get, allocation_release, media_node_observed_add
from media_nodes.models import Allocation, MediaNode
from rooms.models import MeetingSession, ParticipantSession, Room, WebhookReceipt

logger = logging.getLogger(__name__)

# A late room_finished must not close an allocation made after the meeting ended
# (the room placed again on the same node); event times are whole seconds and node
# clocks drift a little, hence the tolerance.
REALLOCATION_TOLERANCE = timedelta(seconds=30)


class WebhookRefused(Exception):
    """The delivery cannot be applied; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


def _field_limit(model, field: str) -> int:
    return model._meta.get_field(field).max_length


def _check(event: WebhookEvent) -> None:
    """Refuse (400) an event this module cannot store, before anything is written."""
    if not event.id or len(event.id) > _field_limit(WebhookReceipt, "event_id"):
        raise WebhookRefused(400, "the event has no valid id")
    if event.event not in HANDLERS:
        return
    if not event.room.sid or len(event.room.sid) > _field_limit(MeetingSession, "livekit_sid"):
        raise WebhookRefused(400, "the event has no valid room sid")
    if len(event.room.name) > _field_limit(MeetingSession, "room_name"):
        raise WebhookRefused(400, "the room name is too long")
    if event.event.startswith("participant_"):
        participant = event.participant
        if not participant.identity or not participant.sid:
            raise WebhookRefused(400, "the event has no participant identity or sid")
        if len(participant.identity) > _field_limit(ParticipantSession, "identity") or len(
            participant.sid
        ) > _field_limit(ParticipantSession, "participant_sid"):
            raise WebhookRefused(400, "the participant identity or sid is too long")


def _moment(seconds: float) -> datetime | None:
    """A LiveKit timestamp (Unix seconds) as a datetime; None when unset or absurd."""
    if not seconds or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _event_time(event: WebhookEvent) -> datetime:
    return _moment(event.created_at) or timezone.now()


def _room_started_at(event: WebhookEvent) -> datetime:
    room = event.room
    return (
        _moment(room.creation_time_ms / 1000) or _moment(room.creation_time) or _event_time(event)
    )


def _receipt_claim(*, node: MediaNode, event: WebhookEvent) -> bool:
    """Record the event id; False if it was already recorded. Under a concurrent
    delivery, the insert waits for the other transaction and then does nothing."""
    receipt = WebhookReceipt(event_id=event.id, node=node, event_type=event.event)
    WebhookReceipt.objects.bulk_create([receipt], ignore_conflicts=True)
    return WebhookReceipt.objects.filter(pk=receipt.pk).exists()


def _meeting(*, node: MediaNode, event: WebhookEvent) -> MeetingSession:
    """The event's meeting session, created on the first event naming its sid, and
    locked until commit: events of one meeting are applied one after another."""
    sid = event.room.sid
    meeting = MeetingSession.objects.select_for_update().filter(livekit_sid=sid).first()
    if meeting is not None:
        return meeting
    room = Room.objects.filter(slug=event.room.name).only("pk", "ministry_id").first()
    MeetingSession.objects.bulk_create(
        [
            MeetingSession(
                livekit_sid=sid,
                room_name=event.room.name,
                room=room,
                ministry_id=room.ministry_id if room else None,
                node=node,
                started_at=_room_started_at(event),
            )
        ],
        ignore_conflicts=True,
    )
    return MeetingSession.objects.select_for_update().get(livekit_sid=sid)


def _observed_add(node: MediaNode, delta: int) -> None:
    """Move the node's observed load (media_nodes writes it), never below zero."""
    media_node_observed_add(node_id=node.pk, delta=delta)


def _agent_for(identity: str) -> Agent | None:
    """The agent behind a LiveKit identity: their ``sub``, or their id before first
    login (see ``rooms.services.join_token``)."""
    agent = Agent.objects.filter(sub=identity).only("pk", "ministry_id").first()
    if agent is not None:
        return agent
    try:
        pk = uuid.UUID(identity)
    except ValueError:
        return None
    return Agent.objects.filter(pk=pk).only("pk", "ministry_id").first()


def _close(session: ParticipantSession, left_at: datetime) -> None:
    session.left_at = max(left_at, session.joined_at)
    session.duration_seconds = int((session.left_at - session.joined_at).total_seconds())
    session.save(update_fields=["left_at", "duration_seconds", "updated_at"])


def _cover(meeting: MeetingSession, joined_at: datetime) -> None:
    """Keep the meeting's span over its participants' joins (the usage roll-up finds a
    meeting's sessions by the meeting's days, see ``usage.rollup``): a join stamped
    before the start moves the start back, as an early ``room_started`` does, and a
    join stamped after the end moves the end on."""
    fields = []
    if joined_at < meeting.started_at:
        meeting.started_at = joined_at
        fields.append("started_at")
    if meeting.ended_at is not None and joined_at > meeting.ended_at:
        meeting.ended_at = joined_at
        fields.append("ended_at")
    if fields:
        meeting.save(update_fields=[*fields, "updated_at"])


def _new_participant(meeting: MeetingSession, event: WebhookEvent) -> ParticipantSession:
    participant = event.participant
    agent = _agent_for(participant.identity)
    joined_at = (
        _moment(participant.joined_at_ms / 1000)
        or _moment(participant.joined_at)
        or _event_time(event)
    )
    _cover(meeting, joined_at)
    return ParticipantSession(
        meeting=meeting,
        agent=agent,
        ministry_id=agent.ministry_id if agent else None,
        organizational_unit=agent.organizational_unit if agent else "",
        identity=participant.identity,
        participant_sid=participant.sid,
        joined_at=joined_at,
    )


def _peak_raise(meeting: MeetingSession, floor: int = 0) -> None:
    present = max(meeting.participants.filter(left_at__isnull=True).count(), floor)
    if present > meeting.peak_participants:
        meeting.peak_participants = present
        meeting.save(update_fields=["peak_participants", "updated_at"])


def _room_started(node: MediaNode, event: WebhookEvent) -> None:
    meeting = _meeting(node=node, event=event)
    started_at = _room_started_at(event)
    if started_at < meeting.started_at:  # opened earlier by an early participant event
        meeting.started_at = started_at
        meeting.save(update_fields=["started_at", "updated_at"])


def _room_finished(node: MediaNode, event: WebhookEvent) -> None:
    meeting = _meeting(node=node, event=event)
    last_join = meeting.participants.aggregate(last=Max("joined_at"))["last"]
    ended_at = max(_event_time(event), meeting.started_at, last_join or meeting.started_at)
    if meeting.ended_at is None:
        meeting.ended_at = ended_at
        meeting.save(update_fields=["ended_at", "updated_at"])
    # The node has let everyone go: close who is left (their own left events, if
    # they come later, find their sessions closed and change nothing).
    leftovers = list(meeting.participants.filter(left_at__isnull=True))
    for session in leftovers:
        _close(session, meeting.ended_at)
    _observed_add(node, -len(leftovers))
    _allocation_release(node=node, event=event, meeting=meeting)


def _allocation_release(*, node: MediaNode, event: WebhookEvent, meeting: MeetingSession) -> None:
    """Release the room's live allocation, if it is on the node that finished it and
    is not a newer placement of the room on that node."""
    room_id = (
        meeting.room_id
        or Room.objects.filter(slug=event.room.name).values_list("pk", flat=True).first()
    )
    if room_id is None:
        return
    allocation = allocation_live_get(room_id=room_id, node_id=node.pk)
    if allocation is None:
        return
    newer_meeting = (
        MeetingSession.objects.filter(
            room_id=room_id, node=node, ended_at__isnull=True, started_at__gt=meeting.started_at
        )
        .exclude(pk=meeting.pk)
        .exists()
    )
    if newer_meeting or allocation.created_at > meeting.ended_at + REALLOCATION_TOLERANCE:
        logger.info(
            "room_finished for %s on %s is older than its live allocation; kept",
            event.room.name,
            node.name,
        )
        return
    # By its id: if it was closed (and the room placed again) meanwhile, nothing happens.
    allocation_release(allocation_id=allocation.pk, reason=Allocation.Reason.FINISHED)


def _participant_joined(node: MediaNode, event: WebhookEvent) -> None:
    meeting = _meeting(node=node, event=event)
    if meeting.participants.filter(participant_sid=event.participant.sid).exists():
        return  # its left event came first, or the meeting was closed with it
    session = _new_participant(meeting, event)
    if meeting.ended_at is not None:  # a join heard of after the meeting ended
        session.save()
        _close(session, meeting.ended_at)
        _peak_raise(meeting, floor=1)
        return
    session.save()
    _observed_add(node, 1)
    _peak_raise(meeting)


def _participant_left(node: MediaNode, event: WebhookEvent) -> None:
    meeting = _meeting(node=node, event=event)
    left_at = _event_time(event)
    session = (
        meeting.participants.select_for_update()
        .filter(participant_sid=event.participant.sid)
        .first()
    )
    if session is None:  # the left event came first: record the whole stay
        session = _new_participant(meeting, event)
        session.save()
        _close(session, left_at)
        _peak_raise(meeting, floor=1)
    elif session.left_at is None:
        _close(session, left_at)
        _observed_add(node, -1)


HANDLERS = {
    "room_started": _room_started,
    "room_finished": _room_finished,
    "participant_joined": _participant_joined,
    "participant_left": _participant_left,
}
# LiveKit's documented webhook events (labels of the webhook counter).
KNOWN_EVENTS = frozenset(
    {
        *HANDLERS,
        "participant_connection_aborted",
        "track_published",
        "track_unpublished",
        "egress_started",
        "egress_updated",
        "egress_ended",
        "ingress_started",
        "ingress_ended",
    }
)


def webhook_event_apply(*, node: MediaNode, event: WebhookEvent) -> str:
    """Apply one verified event, once: ``processed``, ``duplicate`` or ``ignored``."""
    _check(event)
    handler = HANDLERS.get(event.event)
    if handler is None:
        return "ignored"
    with transaction.atomic():
        if not _receipt_claim(node=node, event=event):
            return "duplicate"
        handler(node, event)
    return "processed"
