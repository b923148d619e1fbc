"""Writes made by a ministry's directory through SCIM.

Each function works on the caller's ministry only (the token's), validates the
whole request before writing, reuses the agent services (seats, domain rules,
audit) and runs in one transaction: a refused request leaves nothing behind.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.access import require_admin
from accounts.agents import agent_create, agent_deactivate, agent_reactivate, agent_update
from accounts.ministries import email_domain_check
from accounts.models import Agent, Ministry
from accounts.tokens import token_digest
from audit.actor import Actor
from audit.services import audit_record
from controlplane import errors
from scim.models import DirectoryGroup, DirectoryToken

TOKEN_PREFIX = "scim"


@dataclass
class AgentData:
    """What a SCIM User body sets on an agent."""

    email: str
    given_name: str = ""
    usual_name: str = ""
    external_id: str = ""
    organizational_unit: str = ""
    active: bool | None = None  # None: leave as it is (or active, for a new agent)

    def fields(self) -> dict:
        return {
            "given_name": self.given_name,
            "usual_name": self.usual_name,
            "external_id": self.external_id,
            "organizational_unit": self.organizational_unit,
        }


class Conflict(errors.Conflict):
    """The request clashes with an existing resource (409 ``conflict``, SCIM
    ``uniqueness``, in the error table)."""


# -- Tokens ---------------------------------------------------------------------


@transaction.atomic
def directory_token_issue(*, actor: Actor, ministry: Ministry) -> tuple[DirectoryToken, str]:
    """Issue the ministry's directory token, revoking the previous one. Returns the row
    and the clear token, which is shown once and never stored."""
    require_admin(actor, ministry.pk)
    if actor.token is not None:
        raise PermissionDenied("Tokens cannot issue directory tokens.")
    now = timezone.now()
    for old in DirectoryToken.objects.select_for_update().filter(
        ministry=ministry, revoked_at__isnull=True
    ):
        old.revoked_at = now
        old.save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            actor=actor,
            action="directory_token.revoke",
            target=old,
            ministry_id=ministry.pk,
            data={"prefix": old.prefix, "reason": "replaced"},
        )
    body = secrets.token_urlsafe(32)
    clear = f"{TOKEN_PREFIX}_{body}"
    token = DirectoryToken.objects.create(
        ministry=ministry,
        prefix=clear[: len(TOKEN_PREFIX) + 9],
        digest=token_digest(clear),
        created_by=actor.agent,
    )
    audit_record(
        actor=actor,
        action="directory_token.issue",
        target=token,
        ministry_id=ministry.pk,
        data={"prefix": token.prefix},
    )
    return token, clear


@transaction.atomic
def directory_token_revoke(*, actor: Actor, token: DirectoryToken) -> DirectoryToken:
    """Stop a directory's access at once (its sync stops until a new token is issued)."""
    require_admin(actor, token.ministry_id)
    token = DirectoryToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            actor=actor,
            action="directory_token.revoke",
            target=token,
            ministry_id=token.ministry_id,
            data={"prefix": token.prefix},
        )
    return token


def directory_token_authenticate(clear: str) -> DirectoryToken:
    """The live token behind ``clear``; ValueError when unknown, revoked or suspended."""
    if not clear.startswith(f"{TOKEN_PREFIX}_") or len(clear) > 128:
        raise ValueError("Unknown directory token.")
    token = (
        DirectoryToken.objects.select_related("ministry")
        .filter(digest=token_digest(clear), revoked_at__isnull=True)
        .first()
    )
    if token is None:
        raise ValueError("Unknown or revoked directory token.")
    if token.ministry.state == Ministry.State.SUSPENDED:
        raise PermissionDenied("This ministry is suspended: its directory sync is stopped.")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        DirectoryToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


# -- Users ----------------------------------------------------------------------


def _check_unique(ministry: Ministry, data: AgentData, exclude_pk=None) -> None:
    # The domain rule first: an address outside the ministry's domains is refused
    # without telling whether someone elsewhere holds it.
    email_domain_check(ministry, data.email)
    clash = Agent.objects.filter(email=data.email)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise Conflict(f"userName “{data.email}” is already taken.")
    if data.external_id:
        clash = Agent.objects.filter(ministry=ministry, external_id=data.external_id)
        if exclude_pk:
            clash = clash.exclude(pk=exclude_pk)
        if clash.exists():
            raise Conflict(f"externalId “{data.external_id}” is already taken.")


def user_create(*, actor: Actor, ministry: Ministry, data: AgentData) -> Agent:
    """Create an agent; an agent this directory deleted (awaiting erasure) with the same
    userName comes back instead, with its history.

    No transaction of its own: agent_create is the creation's transaction (rather
    than a savepoint inside this one), and bringing an agent back is another."""
    returning = (
        Agent.objects.filter(ministry=ministry, email=data.email, erase_after__isnull=False)
        .values_list("pk", flat=True)
        .first()
    )
    if returning is not None:
        return _user_bring_back(actor=actor, pk=returning, data=data)
    # agent_create checks the domain first and lets the unique constraints refuse a
    # taken userName or externalId: checking them here too would run them twice.
    try:
        return agent_create(
            actor=actor,
            ministry=ministry,
            email=data.email,
            is_active=data.active is not False,
            **data.fields(),
        )
    except ValidationError as exc:
        conflict = _conflict(exc, data)
        if conflict is None:
            raise
        raise conflict from exc


@transaction.atomic
def _user_bring_back(*, actor: Actor, pk, data: AgentData) -> Agent:
    """The deleted agent ``pk`` is re-created by its directory: erasure cancelled, then
    every attribute set as for a replacement."""
    returning = Agent.objects.select_for_update().get(pk=pk)
    Agent.objects.filter(pk=pk).update(erase_after=None)
    audit_record(
        actor=actor,
        action="agent.erasure_cancel",
        target=returning,
        ministry_id=returning.ministry_id,
        data={"reason": "recreated by the directory"},
    )
    returning.refresh_from_db()
    return user_replace(actor=actor, agent=returning, data=data)


def _conflict(exc: ValidationError, data: AgentData) -> Conflict | None:
    """A value agent_create found taken (code ``unique``) as a 409 naming the SCIM
    attribute; None for any other refusal."""
    errors = getattr(exc, "error_dict", {})
    if any(e.code == "unique" for e in errors.get("email", [])):
        return Conflict(f"userName “{data.email}” is already taken.")
    if any(e.code == "unique" for e in errors.get("external_id", [])):
        return Conflict(f"externalId “{data.external_id}” is already taken.")
    return None


@transaction.atomic
def user_replace(*, actor: Actor, agent: Agent, data: AgentData) -> Agent:
    """Set every directory attribute of an agent (PUT, and PATCH once applied)."""
    _check_unique(agent.ministry, data, exclude_pk=agent.pk)
    # Leaving first frees a seat before anything else could need it.
    if data.active is False and agent.is_active:
        agent_deactivate(actor=actor, agent=agent)
    # agent_update records only what differs (nothing at all when nothing does).
    agent_update(actor=actor, agent=agent, email=data.email, **data.fields())
    if data.active is True and not agent.is_active:
        agent_reactivate(actor=actor, agent=agent)
    agent.refresh_from_db()
    return agent


@transaction.atomic
def user_delete(*, actor: Actor, agent: Agent) -> Agent:
    """DELETE from the directory: the agent is deactivated at once (seat freed, sessions
    ended) and their personal data is erased after the ministry's retention period."""
    agent_deactivate(actor=actor, agent=agent)
    erase_after = timezone.now() + timedelta(days=agent.ministry.retention_days)
    Agent.objects.filter(pk=agent.pk).update(erase_after=erase_after)
    DirectoryGroup.members.through.objects.filter(agent_id=agent.pk).delete()
    audit_record(
        actor=actor,
        action="agent.erasure_schedule",
        target=agent,
        ministry_id=agent.ministry_id,
        data={"erase_after": erase_after.isoformat()},
    )
    agent.refresh_from_db()
    return agent


@transaction.atomic
def agents_erase_due(*, actor: Actor, now=None, limit: int = 1000) -> int:
    """Erase the personal data of agents whose directory deleted them and whose
    retention has run out: names, identifiers and email are replaced, the row stays
    so that usage figures keep counting them. Returns how many were erased."""
    now = now or timezone.now()
    due = list(
        Agent.objects.select_for_update(skip_locked=True)
        .filter(erase_after__lte=now, is_active=False)
        .values_list("pk", "ministry_id")[:limit]
    )
    for pk, ministry_id in due:
        Agent.objects.filter(pk=pk).update(
            email=f"erased-{pk}@invalid",
            given_name="",
            usual_name="",
            external_id="",
            organizational_unit="",
            sub=None,
            erase_after=None,
            updated_at=now,
        )
        audit_record(
            actor=actor,
            action="agent.erase",
            target=Agent(pk=pk),
            ministry_id=ministry_id,
        )
    return len(due)


# -- Groups ---------------------------------------------------------------------


def _members(ministry: Ministry, member_ids: list[str]) -> list[Agent]:
    wanted = []
    for raw in member_ids:
        try:
            wanted.append(UUID(str(raw)))
        except ValueError as exc:
            raise ValidationError(f"Member “{raw}” is not a user of this directory.") from exc
    found = list(Agent.objects.filter(pk__in=wanted, ministry=ministry, erase_after__isnull=True))
    missing = set(wanted) - {a.pk for a in found}
    if missing:
        raise ValidationError(
            f"Member “{sorted(map(str, missing))[0]}” is not a user of this directory."
        )
    return found


def _check_group_unique(ministry, external_id: str, exclude_pk=None) -> None:
    if not external_id:
        return
    clash = DirectoryGroup.objects.filter(ministry=ministry, external_id=external_id)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise Conflict(f"externalId “{external_id}” is already taken.")


@transaction.atomic
def group_create(
    *, actor: Actor, ministry: Ministry, display_name: str, external_id: str, members: list
) -> DirectoryGroup:
    require_admin(actor, ministry.pk)
    _check_group_unique(ministry, external_id)
    found = _members(ministry, members)
    group = DirectoryGroup.objects.create(
        ministry=ministry, display_name=display_name, external_id=external_id
    )
    group.members.set(found)
    audit_record(
        actor=actor,
        action="directory_group.create",
        target=group,
        ministry_id=ministry.pk,
        data={"display_name": display_name, "members": len(found)},
    )
    return group


@transaction.atomic
def group_replace(
    *, actor: Actor, group: DirectoryGroup, display_name: str, external_id: str, members: list
) -> DirectoryGroup:
    require_admin(actor, group.ministry_id)
    group = DirectoryGroup.objects.select_for_update().get(pk=group.pk)
    _check_group_unique(group.ministry, external_id, exclude_pk=group.pk)
    found = _members(group.ministry, members)
    before = set(group.members.values_list("pk", flat=True))
    after = {a.pk for a in found}
    changed = (group.display_name, group.external_id) != (display_name, external_id)
    if not changed and before == after:
        return group
    group.display_name, group.external_id = display_name, external_id
    group.save()
    group.members.set(found)
    audit_record(
        actor=actor,
        action="directory_group.update",
        target=group,
        ministry_id=group.ministry_id,
        data={
            "display_name": display_name,
            "added": len(after - before),
            "removed": len(before - after),
        },
    )
    return group


@transaction.atomic
def group_delete(*, actor: Actor, group: DirectoryGroup) -> None:
    require_admin(actor, group.ministry_id)
    audit_record(
        actor=actor,
        action="directory_group.delete",
        target=group,
        ministry_id=group.ministry_id,
        data={"display_name": group.display_name},
    )
    group.delete()
