"""Retention of personal usage data: participant sessions are pseudonymised, then
deleted; the daily aggregates stay.

A participant session falls under the retention of the agent's ministry (the
session's ``ministry``), or of the room's ministry when the session has none, or
``USAGE_DEFAULT_RETENTION_DAYS`` when neither is known. Its age is that of its
meeting's end (a meeting still open is never touched):

- ended more than ``retention_days`` ago: pseudonymised. ``agent`` becomes NULL,
  ``identity`` a keyed HMAC pseudonym (``agent-…`` for an agent, ``guest-…``
  otherwise: the roll-up still counts distinct agents by it), ``pseudonymised_at``
  is set; ministry, unit and times are kept.
- ended more than ``retention_days + USAGE_PURGE_AFTER_DAYS`` ago: deleted, and so is
  a meeting session left without participants past that horizon.

``updated_at`` is left alone, so the incremental roll-up does not redo old days; the
DailyUsage rows are never touched. Each run records one audit event per ministry
where something was done (counts only). A second run finds nothing to do.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts.models import Ministry
from audit.actor import Actor
from audit.services import audit_record
from rooms.models import MeetingSession, ParticipantSession

# Pseudonyms of agents carry this prefix: the roll-up still counts distinct agents by
# them (``usage.rollup_scan``, ``usage.selectors``); guests' are not agents.
AGENT_PSEUDONYM_PREFIX = "agent-"
GUEST_PSEUDONYM_PREFIX = "guest-"
BATCH = 1000


@dataclass
class RetentionCounts:
    """What a run did (or would do) for one ministry (``ministry`` None: no ministry)."""

    ministry: Ministry | None
    retention_days: int
    pseudonymised: int = 0
    deleted: int = 0
    meetings_deleted: int = 0

    @property
    def anything(self) -> bool:
        return bool(self.pseudonymised or self.deleted or self.meetings_deleted)


def pseudonym(*, agent_id, identity: str) -> str:
    """A stable pseudonym: the HMAC of the agent's id (or of the identity of a guest)
    under ``USAGE_PSEUDONYM_KEY``; not reversible without the key."""
    key = (settings.USAGE_PSEUDONYM_KEY or "usage-pseudonym:" + settings.SECRET_KEY).encode()
    subject = str(agent_id) if agent_id is not None else identity
    digest = hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()[:40]
    prefix = AGENT_PSEUDONYM_PREFIX if agent_id is not None else GUEST_PSEUDONYM_PREFIX
    return prefix + digest


def _scope(ministry: Ministry | None) -> Q:
    if ministry is None:
        return Q(ministry__isnull=True, meeting__ministry__isnull=True)
    return Q(ministry=ministry) | Q(ministry__isnull=True, meeting__ministry=ministry)


def _plan(ministry: Ministry | None, retention_days: int, now: datetime):
    """The querysets a run acts on for one ministry: sessions to delete, to
    pseudonymise, and meetings to delete once their participants are gone."""
    pseudonymise_before = now - timedelta(days=retention_days)
    delete_before = pseudonymise_before - timedelta(days=settings.USAGE_PURGE_AFTER_DAYS)
    sessions = ParticipantSession.objects.filter(_scope(ministry))
    to_delete = sessions.filter(meeting__ended_at__lt=delete_before)
    to_pseudonymise = sessions.filter(
        meeting__ended_at__lt=pseudonymise_before,
        meeting__ended_at__gte=delete_before,
        pseudonymised_at__isnull=True,
    )
    meetings = MeetingSession.objects.filter(ended_at__lt=delete_before)
    meetings = meetings.filter(ministry=ministry) if ministry else meetings.filter(ministry=None)
    return to_delete, to_pseudonymise, meetings


def _meetings_emptied(meetings, to_delete) -> int:
    """Meetings past the horizon with no participant left once ``to_delete`` is gone."""
    kept = ParticipantSession.objects.filter(meeting=OuterRef("pk")).exclude(
        pk__in=to_delete.values("pk")
    )
    return meetings.filter(~Exists(kept)).count()


def _pseudonymise(queryset, now: datetime) -> int:
    done = 0
    while True:
        batch = list(
            queryset.select_for_update(skip_locked=True).only("pk", "agent_id", "identity")[:BATCH]
        )
        if not batch:
            return done
        for session in batch:
            session.identity = pseudonym(agent_id=session.agent_id, identity=session.identity)
            session.agent_id = None
            session.pseudonymised_at = now
        # bulk_update leaves updated_at alone: the roll-up need not redo these days.
        ParticipantSession.objects.bulk_update(
            batch, ["identity", "agent", "pseudonymised_at"], batch_size=BATCH
        )
        done += len(batch)


def _delete(queryset) -> int:
    done = 0
    while pks := list(queryset.values_list("pk", flat=True)[:BATCH]):
        done += ParticipantSession.objects.filter(pk__in=pks).delete()[0]
    return done


def _buckets() -> list[tuple[Ministry | None, int]]:
    ministries = [(m, m.retention_days) for m in Ministry.objects.order_by("code")]
    return [*ministries, (None, settings.USAGE_DEFAULT_RETENTION_DAYS)]


def usage_retention_apply(
    *, actor: Actor, dry_run: bool = False, now: datetime | None = None
) -> list[RetentionCounts]:
    """Apply (or, with ``dry_run``, count) retention for every ministry; one
    transaction and at most one audit event per ministry."""
    now = now or timezone.now()
    results = []
    for ministry, retention_days in _buckets():
        counts = RetentionCounts(ministry=ministry, retention_days=retention_days)
        to_delete, to_pseudonymise, meetings = _plan(ministry, retention_days, now)
        if dry_run:
            counts.deleted = to_delete.count()
            counts.pseudonymised = to_pseudonymise.count()
            counts.meetings_deleted = _meetings_emptied(meetings, to_delete)
        else:
            with transaction.atomic():
                counts.deleted = _delete(to_delete)
                _, per_model = meetings.filter(participants__isnull=True).delete()
                counts.meetings_deleted = per_model.get(MeetingSession._meta.label, 0)
                counts.pseudonymised = _pseudonymise(to_pseudonymise, now)
                if counts.anything:
                    audit_record(
                        actor=actor,
                        action="usage.retention_apply",
                        ministry_id=ministry.pk if ministry else None,
                        data={
                            "retention_days": retention_days,
                            "purge_after_days": settings.USAGE_PURGE_AFTER_DAYS,
                            "pseudonymised": counts.pseudonymised,
                            "deleted": counts.deleted,
                            "meetings_deleted": counts.meetings_deleted,
                        },
                    )
        results.append(counts)
    return results
