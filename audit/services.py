"""Writes to the audit trail, and its verification."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.db import connection, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone

from audit.actor import Actor
from audit.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64


def audit_event_digest(*, event: AuditEvent) -> str:
    """SHA-256 of an event's canonical JSON form, including the previous link."""
    payload = {
        "sequence": event.sequence,
        "created_at": event.created_at.astimezone(UTC).isoformat(),
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "actor_label": event.actor_label,
        "token_id": str(event.token_id) if event.token_id else None,
        "ip": event.ip,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "ministry_id": str(event.ministry_id) if event.ministry_id else None,
        "data": event.data,
        "prev_hash": event.prev_hash,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _normalised_ip(ip: str | None) -> str | None:
    """The address as the database stores it (so the hash matches what is read back)."""
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip.strip()).compressed
    except ValueError:
        return None


def _claim_next_link() -> tuple[int, str]:
    """Lock the chain head and take the next sequence number, in one statement.

    The row lock is held until the caller's transaction ends, so writers are
    chained one after another; the hash returned is the previous event's.
    """
    table = AuditChainHead._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET sequence = sequence + 1 WHERE id = 1 "  # noqa: S608
            "RETURNING sequence, hash"
        )
        row = cursor.fetchone()
        if row is None:  # the very first event: create the head, racing writers included
            cursor.execute(
                f"INSERT INTO {table} (id, sequence, hash) VALUES (1, 1, %s) "  # noqa: S608
                f"ON CONFLICT (id) DO UPDATE SET sequence = {table}.sequence + 1 "
                "RETURNING sequence, hash",
                [GENESIS_HASH],
            )
            row = cursor.fetchone()
    return row


def _append(event: AuditEvent) -> None:
    """Insert the event and move the head's hash to it, in one round trip."""
    table = AuditChainHead._meta.db_table
    query = InsertQuery(AuditEvent)
    fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
    query.insert_values(fields, [event])
    ((insert_sql, params),) = query.get_compiler(connection=connection).as_sql()
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH appended AS ({insert_sql} RETURNING id) "  # noqa: S608
            f"UPDATE {table} SET hash = %s WHERE id = 1 RETURNING (SELECT id FROM appended)",
            [*params, event.hash],
        )
        event.pk = cursor.fetchone()[0]
    event._state.adding = False


@transaction.atomic(savepoint=False)
def audit_record(
    *,
    actor: Actor,
    action: str,
    target: Any = None,
    ministry_id=None,
    data: dict | None = None,
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction.

    The head row is locked until the caller commits, so concurrent writers
    are chained one after the other and a rolled-back write leaves no event.
    No savepoint: if the event cannot be written, the caller's write must fail too.
    """
    sequence, prev_hash = _claim_next_link()
    agent = actor.agent
    token = actor.token
    event = AuditEvent(
        sequence=sequence,
        created_at=timezone.now(),
        actor_id=agent.pk if agent is not None else None,
        actor_label=actor.label[:254],
        token_id=token.pk if token is not None else None,
        ip=_normalised_ip(actor.ip),
        action=action,
        object_type=target._meta.label_lower if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        object_repr=str(target)[:254] if target is not None else "",
        ministry_id=ministry_id,
        data=json.loads(json.dumps(data or {}, default=str)),
        prev_hash=prev_hash,
    )
    event.hash = audit_event_digest(event=event)
    _append(event)
    return event


@dataclass(frozen=True)
class ChainVerification:
    """The outcome of checking the chain from its first event to the head."""

    intact: bool
    checked: int
    broken_sequence: int | None = None
    reason: str = ""
    head_hash: str = ""


def audit_chain_verify(*, chunk_size: int = 2000) -> ChainVerification:
    """Recompute every link up to the chain head; name the first event that does not hold.

    The head is read first: events appended while the check runs lie beyond it
    and are left to the next check, so a busy trail is never reported broken.
    """
    head = AuditChainHead.objects.filter(pk=1).first() or AuditChainHead(
        sequence=0, hash=GENESIS_HASH
    )
    expected_prev = GENESIS_HASH
    expected_sequence = 1
    checked = 0
    events = (
        AuditEvent.objects.filter(sequence__lte=head.sequence)
        .order_by("sequence")
        .iterator(chunk_size=chunk_size)
    )
    for event in events:
        if event.sequence != expected_sequence:
            return ChainVerification(
                False,
                checked,
                expected_sequence,
                f"event #{expected_sequence} is missing (next found is #{event.sequence})",
            )
        if event.prev_hash != expected_prev:
            return ChainVerification(
                False,
                checked,
                event.sequence,
                f"event #{event.sequence} does not point to the hash of the event before it",
            )
        if audit_event_digest(event=event) != event.hash:
            return ChainVerification(
                False,
                checked,
                event.sequence,
                f"event #{event.sequence} was modified: its content no longer matches its hash",
            )
        expected_prev = event.hash
        expected_sequence += 1
        checked += 1
    if head.sequence != checked or head.hash != expected_prev:
        return ChainVerification(
            False,
            checked,
            checked + 1,
            f"the chain head records event #{head.sequence} but the trail ends at #{checked}",
        )
    if head.pk is None and AuditEvent.objects.exists():
        return ChainVerification(False, 0, 1, "the chain head is missing")
    return ChainVerification(True, checked, head_hash=head.hash)
