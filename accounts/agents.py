"""Writes on agents: provisioning, directory attributes, leaving and coming back.

A ministry's admins (or an operator) manage its agents; an agent who holds roles
beyond that ministry is managed by operators only. An active agent holds a seat
(``licensing.services.seat_reserve``). The API, the console and scim call these.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import access_for, require_admin
from accounts.identifiers import validate_agent_email
from accounts.ministries import email_domain_check
from accounts.models import Agent, ApiToken, Ministry, RoleGrant
from audit.actor import Actor
from audit.services import audit_record
from controlplane.updates import fields_apply
from licensing.services import seat_reserve


def _require_agent_admin(actor: Actor, agent: Agent) -> None:
    """A ministry admin manages their ministry's agents, but not one who holds a role
    beyond that ministry (an operator, a national auditor, another ministry's admin):
    only operators change those."""
    require_admin(actor, agent.ministry_id)
    access = access_for(actor.user)
    if actor.is_system or access.operator:
        return
    if RoleGrant.objects.filter(agent=agent).exclude(ministry_id__in=access.admin_of).exists():
        raise PermissionDenied(
            _(
                "This agent holds roles beyond your ministry: only an "
                "operator may change their account."
            )
        )


AGENT_FIELDS = (
    "given_name",
    "usual_name",
    "external_id",
    "organizational_unit",
    "title",
    "preferred_language",
    "employee_number",
    "manager_id",
)


def _deleted() -> ValidationError:
    """A deleted agent's address and login binding are gone until their erasure: the
    directory creates them anew rather than bringing the row back."""
    return ValidationError(
        {"agent": _("This agent was deleted by the directory: they cannot come back.")}
    )


def _email_taken() -> ValidationError:
    return ValidationError(
        {"email": ValidationError(_("An agent with this email already exists."), code="unique")}
    )


def _external_id_taken() -> ValidationError:
    return ValidationError(
        {
            "external_id": ValidationError(
                _("Another agent of this ministry has this directory identifier."),
                code="unique",
            )
        }
    )


# A concurrent write that passed the checks too is stopped by the database: its
# constraint says which value was taken (the code "unique" lets SCIM answer 409).
UNIQUE_CONSTRAINTS = {
    "accounts_agent_email_key": _email_taken,
    "agent_external_id_unique_per_ministry": _external_id_taken,
}


def _save_unique(agent: Agent, **kwargs) -> None:
    """Save ``agent``; a uniqueness constraint broken by a concurrent write becomes
    the same ValidationError as the check before it."""
    try:
        with transaction.atomic():
            agent.save(**kwargs)
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        if constraint in UNIQUE_CONSTRAINTS:
            raise UNIQUE_CONSTRAINTS[constraint]() from exc
        raise


def _email_allowed(ministry: Ministry, email: str) -> str:
    """The address lower-cased, once its syntax and the ministry's domains allow it."""
    email = (email or "").strip().lower()
    try:
        validate_agent_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": exc}) from exc
    email_domain_check(ministry, email)
    return email


def _check_agent_email(ministry: Ministry, email: str, exclude_pk=None) -> str:
    email = _email_allowed(ministry, email)
    clash = Agent.objects.filter(email=email)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise _email_taken()
    return email


def _check_external_id(ministry: Ministry, external_id: str, exclude_pk=None) -> None:
    if not external_id:
        return
    clash = Agent.objects.filter(
        ministry=ministry, external_id=external_id, deleted_at__isnull=True
    )
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise _external_id_taken()


def _insert_unless_taken(agent: Agent) -> str | None:
    """Insert a new agent unless its email or directory identifier is taken, in one
    statement (``INSERT … ON CONFLICT DO NOTHING RETURNING``): the constraints stop
    concurrent writers too, and the transaction stays usable. Returns the field
    whose value is taken (asked only then), or None once inserted."""
    query = InsertQuery(Agent, on_conflict=OnConflict.IGNORE)
    query.insert_values(Agent._meta.concrete_fields, [agent])
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = [Agent._meta.pk]
    ((sql, params),) = compiler.as_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.fetchone() is not None
    if inserted:
        agent._state.adding, agent._state.db = False, connection.alias
        return None
    return "email" if Agent.objects.filter(email=agent.email).exists() else "external_id"


@transaction.atomic
def agent_create(
    *, actor: Actor, ministry: Ministry, email: str, is_active: bool = True, **fields
) -> Agent:
    """Provision an agent in a ministry (its admins, or an operator). An active agent
    takes a seat; one created inactive (a directory may push leavers) takes none."""
    require_admin(actor, ministry.pk)
    email = _email_allowed(ministry, email)
    agent = Agent(
        email=email,
        ministry=ministry,
        is_active=is_active,
        deactivated_at=None if is_active else timezone.now(),
        **{k: v for k, v in fields.items() if k in AGENT_FIELDS},
    )
    agent.set_unusable_password()
    # The unique constraints decide, with no check before and no savepoint; the
    # insert comes before the pool's lock, which is then held for less time.
    taken = _insert_unless_taken(agent)
    if taken == "email":
        raise _email_taken()
    if taken == "external_id":
        raise _external_id_taken()
    if is_active:
        seat_reserve(ministry=ministry, count=0)  # the new agent is counted already
    audit_record(
        actor=actor,
        action="agent.create",
        target=agent,
        ministry_id=ministry.pk,
        data={"email": email, "is_active": is_active, **fields},
    )
    return agent


@transaction.atomic
def agent_update(*, actor: Actor, agent: Agent, **fields) -> Agent:
    """Change an agent's directory attributes or email (its ministry's admins)."""
    agent = (
        Agent.objects.select_for_update(of=("self",)).select_related("ministry").get(pk=agent.pk)
    )
    _require_agent_admin(actor, agent)
    if agent.deleted_at is not None:
        raise _deleted()
    # Only a new value is checked (a directory resends what we hold at every sync).
    if fields.get("email", agent.email) != agent.email:
        fields["email"] = _check_agent_email(agent.ministry, fields["email"], exclude_pk=agent.pk)
    if fields.get("external_id", agent.external_id) != agent.external_id:
        _check_external_id(agent.ministry, fields["external_id"], exclude_pk=agent.pk)
    changes = fields_apply(agent, fields, allowed=(*AGENT_FIELDS, "email"))
    if changes:  # a directory sending what we hold already changes nothing
        _save_unique(agent)
        audit_record(
            actor=actor,
            action="agent.update",
            target=agent,
            ministry_id=agent.ministry_id,
            data=changes,
        )
    return agent


@transaction.atomic
def agent_deactivate(*, actor: Actor, agent: Agent) -> Agent:
    """Deactivate a leaver: they can no longer log in and their sessions stop at once.

    Authentication backends refuse inactive agents on every request, so an open
    session is worthless from the next request on.
    """
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    _require_agent_admin(actor, agent)
    if actor.agent is not None and actor.agent.pk == agent.pk:
        raise ValidationError({"agent": _("You cannot deactivate your own account.")})
    if not agent.is_active:
        return agent
    agent.is_active = False
    agent.deactivated_at = timezone.now()
    agent.save(update_fields=["is_active", "deactivated_at", "updated_at"])
    audit_record(
        actor=actor, action="agent.deactivate", target=agent, ministry_id=agent.ministry_id
    )
    # A leaver's automation leaves with them.
    for token in ApiToken.objects.filter(created_by=agent, revoked_at__isnull=True):
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=agent.deactivated_at)
        audit_record(
            actor=actor,
            action="api_token.revoke",
            target=token,
            ministry_id=token.ministry_id,
            data={"prefix": token.prefix, "reason": "creator deactivated"},
        )
    return agent


@transaction.atomic
def agent_reactivate(*, actor: Actor, agent: Agent) -> Agent:
    """Give a deactivated agent their access back."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    _require_agent_admin(actor, agent)
    if agent.is_active:
        return agent
    if agent.deleted_at is not None:
        raise _deleted()
    if agent.ministry_id is not None:
        seat_reserve(ministry=agent.ministry)
    agent.is_active = True
    agent.deactivated_at = None
    agent.save(update_fields=["is_active", "deactivated_at", "updated_at"])
    audit_record(
        actor=actor, action="agent.reactivate", target=agent, ministry_id=agent.ministry_id
    )
    return agent
