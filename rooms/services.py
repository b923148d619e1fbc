"""Rooms: creation and sharing, and joining (placement is asked of media_nodes)."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import access_for
from accounts.models import Agent
from audit.actor import Actor
from audit.services import audit_record
from controlplane.updates import fields_apply
from media_nodes.allocations import allocation_release, placement_request_answered
from media_nodes.driver import livekit_sdk
from media_nodes.models import Allocation
from rooms.models import Room

logger = logging.getLogger(__name__)

SLUG_LETTERS = "abcdefghijkmnopqrstuvwxyz"  # no "l": it reads as 1 or I


def new_slug() -> str:
    """``abc-defg-hij``: 10 letters, about 47 bits, readable over the phone."""
    pick = lambda n: "".join(secrets.choice(SLUG_LETTERS) for _ in range(n))  # noqa: E731
    return f"{pick(3)}-{pick(4)}-{pick(3)}"


def _check_size(size) -> int:
    if not isinstance(size, int) or not 2 <= size <= 1000:
        raise ValidationError(
            {"expected_size": _("The expected size is between 2 and 1,000 participants.")}
        )
    return size


def _clean_name(name) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError({"name": _("Give the room a name of at most 200 characters.")})
    return name


def _require_owner_or_admin(actor: Actor, room: Room) -> None:
    if actor.is_system:
        return
    if actor.agent is not None and actor.agent.pk == room.owner_id:
        return
    if access_for(actor.user).can_admin(room.ministry_id):
        return
    raise PermissionDenied(_("Only the room's owner or its ministry's admins may do this."))


@transaction.atomic
def room_create(
    *, actor: Actor, name: str, access: str = Room.Access.MINISTRY, expected_size: int = 10
) -> Room:
    """An agent creates a room in their own ministry."""
    owner = actor.agent
    if owner is None or owner.ministry_id is None or not owner.is_active:
        raise PermissionDenied(_("Only an active agent of a ministry may create a room."))
    name = _clean_name(name)
    if access not in Room.Access.values:
        raise ValidationError({"access": _("Unknown access level.")})
    for _attempt in range(5):
        try:
            with transaction.atomic():
                room = Room.objects.create(
                    slug=new_slug(),
                    name=name,
                    owner=owner,
                    ministry_id=owner.ministry_id,
                    access=access,
                    expected_size=_check_size(expected_size),
                )
            break
        except IntegrityError:  # a slug already taken: draw again
            continue
    else:  # pragma: no cover - 47 bits make five collisions in a row impossible
        raise RuntimeError("could not draw a free room slug")
    audit_record(
        actor=actor,
        action="room.create",
        target=room,
        ministry_id=room.ministry_id,
        data={"name": name, "access": access, "expected_size": expected_size},
    )
    return room


ROOM_FIELDS = ("name", "access", "expected_size")


@transaction.atomic
def room_update(*, actor: Actor, room: Room, **fields) -> Room:
    room = Room.objects.select_for_update().get(pk=room.pk)
    _require_owner_or_admin(actor, room)
    cleaned = {}
    for field, value in fields.items():
        if field == "name":
            value = _clean_name(value)
        elif field == "access":
            if value not in Room.Access.values:
                raise ValidationError({"access": _("Unknown access level.")})
        elif field == "expected_size":
            value = _check_size(value)
        cleaned[field] = value
    changes = fields_apply(room, cleaned, allowed=ROOM_FIELDS)
    if changes:
        room.save()
        audit_record(
            actor=actor,
            action="room.update",
            target=room,
            ministry_id=room.ministry_id,
            data=changes,
        )
    return room


@transaction.atomic
def room_invite(*, actor: Actor, room: Room, agents: list[Agent]) -> Room:
    """Invite agents (of any ministry: meetings cross ministries)."""
    _require_owner_or_admin(actor, room)
    inactive = [a.email for a in agents if not a.is_active]
    if inactive:
        raise ValidationError(
            {"agents": _("Inactive agents cannot be invited: %s") % ", ".join(inactive)}
        )
    room.invitees.add(*agents)
    audit_record(
        actor=actor,
        action="room.invite",
        target=room,
        ministry_id=room.ministry_id,
        data={"agents": [a.email for a in agents]},
    )
    return room


@transaction.atomic
def room_delete(*, actor: Actor, room: Room) -> None:
    """Delete a room: its live meeting ends (the allocation is released)."""
    room = Room.objects.select_for_update().get(pk=room.pk)
    _require_owner_or_admin(actor, room)
    room.deleted_at = timezone.now()
    room.save(update_fields=["deleted_at", "updated_at"])
    allocation_release(room_id=room.pk, reason=Allocation.Reason.ROOM_DELETED)
    placement_request_answered(room_id=room.pk)
    audit_record(actor=actor, action="room.delete", target=room, ministry_id=room.ministry_id)


# -- Joining ------------------------------------------------------------------------


@dataclass
class Join:
    """What a join answers: where to connect, and the token to present there."""

    room: Room
    node_url: str
    token: str
    expires_at: object


def can_join(agent: Agent, room: Room) -> bool:
    if room.deleted_at is not None or not agent.is_active:
        return False
    if room.access == Room.Access.PUBLIC:
        return True
    if agent.pk == room.owner_id:
        return True
    if room.access == Room.Access.MINISTRY and agent.ministry_id == room.ministry_id:
        return True
    return room.invitees.filter(pk=agent.pk).exists()


def join_token(*, agent: Agent, room: Room, allocation: Allocation) -> Join:
    """A LiveKit access token for the allocation's node: identity is the agent's
    ``sub`` (or id before their first login), room grants by role, short expiry."""
    lk, _aiohttp = livekit_sdk()
    ttl = timedelta(seconds=settings.JOIN_TOKEN_TTL_SECONDS)
    is_host = agent.pk == room.owner_id
    grants = lk.VideoGrants(
        room_join=True,
        room=room.slug,
        can_publish=True,
        can_subscribe=True,
        can_publish_data=True,
        room_admin=is_host,
    )
    node = allocation.node
    token = (
        lk.AccessToken(node.api_key, node.api_secret)
        .with_identity(agent.sub or str(agent.pk))
        .with_name(agent.full_name or agent.email)
        .with_ttl(ttl)
        .with_grants(grants)
        .with_metadata('{"host": true}' if is_host else "{}")
        .to_jwt()
    )
    return Join(room=room, node_url=node.url, token=token, expires_at=timezone.now() + ttl)
