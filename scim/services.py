"""Writes made by a ministry's directory through SCIM.

Each function works on the caller's ministry only (the token's), validates the
whole request before writing, reuses the agent services (seats, domain rules,
audit) and runs in one transaction: a refused request leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import require_admin
from accounts.agents import agent_create, agent_deactivate, agent_reactivate, agent_update
from accounts.grants import last_admin_check
from accounts.identifiers import validate_agent_email
from accounts.models import Agent, Ministry
from audit.actor import Actor
from audit.services import audit_record
from controlplane import errors
from scim.models import DirectoryGroup


@dataclass
class AgentData:
    """What a SCIM User body sets on an agent."""

    email: str
    given_name: str = ""
    usual_name: str = ""
    external_id: str = ""
    organizational_unit: str = ""
    title: str = ""
    preferred_language: str = ""
    employee_number: str = ""
    manager: str = ""  # the manager's SCIM id (an agent of the same ministry), or ""
    active: bool | None = None  # None: leave as it is (or active, for a new agent)

    def fields(self, ministry: Ministry, agent: Agent | None = None) -> dict:
        """The agent's columns, the manager resolved within ``ministry``."""
        return {
            "given_name": self.given_name,
            "usual_name": self.usual_name,
            "external_id": self.external_id,
            "organizational_unit": self.organizational_unit,
            "title": self.title,
            "preferred_language": self.preferred_language,
            "employee_number": self.employee_number,
            "manager_id": _manager(ministry, self.manager, agent),
        }


def _manager(ministry: Ministry, raw: str, agent: Agent | None) -> UUID | None:
    """The manager's primary key: an agent of this ministry the directory can see
    (not deleted), other than the agent itself. Anything else is a precise 400
    (Entra ID retries the manager once the manager is provisioned)."""
    if not raw:
        return None
    try:
        pk = UUID(raw)
    except ValueError:
        pk = None
    if agent is not None and pk == agent.pk:
        raise ValidationError(_("manager cannot be the agent itself."))
    if (
        pk is None
        or not Agent.objects.filter(pk=pk, ministry=ministry, deleted_at__isnull=True).exists()
    ):
        raise ValidationError(
            _("manager “%(value)s” is not a user of this directory.") % {"value": raw}
        )
    return pk


class Conflict(errors.Conflict):
    """The request clashes with an existing resource (409 ``conflict``, SCIM
    ``uniqueness``, in the error table)."""


# -- Users ----------------------------------------------------------------------


# The SCIM name of each agent column a User sets, for the errors that name it.
SCIM_ATTRIBUTES = {
    "email": "userName",
    "given_name": "name.givenName",
    "usual_name": "name.familyName",
    "external_id": "externalId",
    "organizational_unit": "department",
    "title": "title",
    "preferred_language": "preferredLanguage",
    "employee_number": "employeeNumber",
}


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _check_strings(model, values: dict, names: dict) -> None:
    """Every stored string within its column's length and free of control characters,
    line breaks and tabs included (400 ``invalidValue`` naming the attribute, rather
    than the database's error or a name that breaks a page)."""
    for name, value in values.items():
        if not isinstance(value, str):
            continue
        attribute = names.get(name, name)
        if CONTROL_CHARACTERS.search(value):
            raise ValidationError(
                _("“%(attribute)s” holds a control character.") % {"attribute": attribute}
            )
        try:
            limit = model._meta.get_field(name).max_length
        except FieldDoesNotExist:
            continue
        if limit and len(value) > limit:
            raise ValidationError(
                _("%(attribute)s is longer than %(n)s characters.")
                % {"attribute": attribute, "n": limit}
            )


def _check_data(data: AgentData) -> None:
    values = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    _check_strings(Agent, values, SCIM_ATTRIBUTES)
    try:
        validate_agent_email(data.email)
    except ValidationError as exc:
        raise ValidationError(
            _("userName “%(value)s” is not a valid email address.") % {"value": data.email}
        ) from exc


UNIQUE_ATTRIBUTES = {"email": "userName", "external_id": "externalId"}


@contextmanager
def _uniqueness(data: AgentData):
    """A value taken meanwhile (a concurrent create or rename that the database
    stopped) answers like one taken before: 409 ``uniqueness`` naming the attribute."""
    try:
        yield
    except ValidationError as exc:
        for field, attribute in UNIQUE_ATTRIBUTES.items():
            if any(e.code == "unique" for e in getattr(exc, "error_dict", {}).get(field, [])):
                value = data.email if field == "email" else data.external_id
                raise Conflict(
                    _("%(attribute)s “%(value)s” is already taken.")
                    % {"attribute": attribute, "value": value}
                ) from exc
        raise


def user_create(*, actor: Actor, ministry: Ministry, data: AgentData) -> Agent:
    """Create an agent. A userName this directory deleted before is free again and
    gives a new resource: a deleted agent is gone for the directory (RFC 7644 §3.6),
    their row only waits for the erasure of its personal data.

    No transaction of its own: agent_create is the creation's transaction, and it
    checks the domain and lets the unique constraints refuse a taken userName or
    externalId (checking them here too would run them twice)."""
    _check_data(data)
    with _uniqueness(data):
        return agent_create(
            actor=actor,
            ministry=ministry,
            email=data.email,
            is_active=data.active is not False,
            **data.fields(ministry),
        )


@transaction.atomic
def user_replace(*, actor: Actor, agent: Agent, data: AgentData) -> Agent:
    """Set every directory attribute of an agent (PUT, and PATCH once applied)."""
    if data.active is False and agent.is_active:
        last_admin_check(agent=agent)  # 409 before anything is written
    # agent_update checks a new address (syntax, domain) and externalId, and the
    # constraints stop a concurrent taker: _uniqueness answers both as 409.
    _check_data(data)
    # Leaving first frees a seat before anything else could need it.
    if data.active is False and agent.is_active:
        agent_deactivate(actor=actor, agent=agent)
    # agent_update records only what differs (nothing at all when nothing does).
    with _uniqueness(data):
        agent_update(
            actor=actor, agent=agent, email=data.email, **data.fields(agent.ministry, agent)
        )
    if data.active is True and not agent.is_active:
        agent_reactivate(actor=actor, agent=agent)
    agent.refresh_from_db()
    return agent


@transaction.atomic
def user_delete(*, actor: Actor, agent: Agent) -> Agent:
    """DELETE from the directory: the agent is deactivated at once (seat freed, sessions
    ended), leaves their groups and is gone for the directory (404, no uniqueness
    clash): the address moves aside and the identity provider's ``sub`` is unbound,
    so the same person's next login or re-creation makes a new agent. Their personal
    data is erased after the ministry's retention period (``agents_erase_due``)."""
    last_admin_check(agent=agent)  # 409 before anything is written
    agent_deactivate(actor=actor, agent=agent)
    now = timezone.now()
    erase_after = now + timedelta(days=agent.ministry.retention_days)
    Agent.objects.filter(pk=agent.pk).update(
        deleted_at=now,
        deleted_email=F("email"),
        email=f"deleted-{agent.pk}@invalid",
        sub=None,
        erase_after=erase_after,
        updated_at=now,
    )
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
    retention has run out: names, the address kept aside and identifiers are blanked,
    the row stays (with its placeholder address) so that usage figures keep counting
    them. Returns how many were erased."""
    now = now or timezone.now()
    due = list(
        Agent.objects.select_for_update(skip_locked=True)
        .filter(erase_after__lte=now, is_active=False)
        .values_list("pk", "ministry_id")[:limit]
    )
    for pk, ministry_id in due:
        Agent.objects.filter(pk=pk).update(
            email=f"deleted-{pk}@invalid",
            deleted_email="",
            deleted_at=Coalesce(F("deleted_at"), Value(now)),
            given_name="",
            usual_name="",
            external_id="",
            organizational_unit="",
            title="",
            preferred_language="",
            employee_number="",
            manager=None,
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
            raise ValidationError(
                _("Member “%(value)s” is not a user of this directory.") % {"value": raw}
            ) from exc
    found = list(Agent.objects.filter(pk__in=wanted, ministry=ministry, deleted_at__isnull=True))
    missing = set(wanted) - {a.pk for a in found}
    if missing:
        raise ValidationError(
            _("Member “%(value)s” is not a user of this directory.")
            % {"value": sorted(map(str, missing))[0]}
        )
    return found


def _check_group_data(display_name: str, external_id: str) -> None:
    _check_strings(
        DirectoryGroup,
        {"display_name": display_name, "external_id": external_id},
        {"display_name": "displayName", "external_id": "externalId"},
    )


def _group_save(group: DirectoryGroup, **kwargs) -> None:
    """Save ``group``; an externalId taken meanwhile by a concurrent write (the
    database's constraint) answers 409 like one taken before."""
    try:
        with transaction.atomic():
            group.save(**kwargs)
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        if constraint == "directory_group_external_id_unique":
            raise Conflict(
                _("externalId “%(value)s” is already taken.") % {"value": group.external_id}
            ) from exc
        raise


def _check_group_unique(ministry, external_id: str, exclude_pk=None) -> None:
    if not external_id:
        return
    clash = DirectoryGroup.objects.filter(ministry=ministry, external_id=external_id)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise Conflict(_("externalId “%(value)s” is already taken.") % {"value": external_id})


@transaction.atomic
def group_create(
    *, actor: Actor, ministry: Ministry, display_name: str, external_id: str, members: list
) -> DirectoryGroup:
    require_admin(actor, ministry.pk)
    _check_group_data(display_name, external_id)
    _check_group_unique(ministry, external_id)
    found = _members(ministry, members)
    group = DirectoryGroup(ministry=ministry, display_name=display_name, external_id=external_id)
    _group_save(group, force_insert=True)
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
    _check_group_data(display_name, external_id)
    _check_group_unique(group.ministry, external_id, exclude_pk=group.pk)
    found = _members(group.ministry, members)
    before = set(group.members.values_list("pk", flat=True))
    after = {a.pk for a in found}
    changed = (group.display_name, group.external_id) != (display_name, external_id)
    if not changed and before == after:
        return group
    group.display_name, group.external_id = display_name, external_id
    _group_save(group)
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
    """Delete a group. Its row is locked first, as a replacement locks it first: a
    DELETE and a PATCH of one group then wait for each other instead of deadlocking
    over its membership rows."""
    require_admin(actor, group.ministry_id)
    group = DirectoryGroup.objects.select_for_update().get(pk=group.pk)
    audit_record(
        actor=actor,
        action="directory_group.delete",
        target=group,
        ministry_id=group.ministry_id,
        data={"display_name": group.display_name},
    )
    group.delete()
