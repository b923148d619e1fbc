"""Role grants: granting, promising by email (granted at first login), withdrawing,
and bootstrapping the first operator from the shell.

Operators grant anything; a ministry's admin grants admin or auditor roles on their
own ministry; API tokens never grant. Every grant is audited.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.access import access_for, require_admin, require_operator
from accounts.identifiers import validate_agent_email
from accounts.ministries import email_domain_check
from accounts.models import Agent, Ministry, PendingRoleGrant, Role, RoleGrant
from audit.actor import Actor
from audit.services import audit_record
from controlplane.errors import DomainError


class LastAdmin(DomainError):
    """Deactivating or deleting this agent would leave their ministry without an active
    admin (409; no SCIM ``scimType`` fits: RFC 7644 gives 409 only ``uniqueness``)."""

    status = 409
    code = "last_admin"


def last_admin_check(*, agent: Agent) -> None:
    """Refuse (LastAdmin) to let ``agent`` go if they are the last active admin of their
    ministry: a directory that drops its admins would lock the ministry out of its own
    console, tokens included.

    Call it inside the transaction that deactivates or deletes, before the change. It
    locks the active admins' agent rows in primary-key order, so two directories
    deactivating the last two admins at once are serialised and the second is refused
    (after the first commits, the locking query no longer finds the first admin).
    """
    if agent.ministry_id is None or not agent.is_active:
        return
    admin_ids = RoleGrant.objects.filter(
        ministry_id=agent.ministry_id, role=Role.MINISTRY_ADMIN
    ).values("agent_id")
    if not RoleGrant.objects.filter(
        agent_id=agent.pk, ministry_id=agent.ministry_id, role=Role.MINISTRY_ADMIN
    ).exists():
        return
    active = list(
        Agent.objects.select_for_update()
        .filter(pk__in=admin_ids, is_active=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if active == [agent.pk]:
        raise LastAdmin(
            _(
                "%(email)s is the last active admin of their ministry: a directory cannot "
                "deactivate or delete them. Grant the ministry admin role to another agent "
                "first."
            )
            % {"email": agent.email}
        )


def _check_grant_rights(actor: Actor, role: str, ministry: Ministry | None) -> None:
    """Operators grant anything; a ministry admin grants admin or auditor roles on their
    own ministry. Tokens never grant."""
    access = access_for(actor.user)
    if access.via_token:
        raise PermissionDenied(_("API tokens cannot grant roles."))
    if role == Role.OPERATOR:
        require_operator(actor)
        if ministry is not None:
            raise ValidationError({"ministry": _("The operator role is national.")})
    elif role == Role.MINISTRY_ADMIN and ministry is None:
        raise ValidationError({"ministry": _("A ministry admin role needs a ministry.")})
    elif ministry is None:
        require_operator(actor)  # a national auditor
    if ministry is not None:
        require_admin(actor, ministry.pk)


@transaction.atomic
def role_grant_create(
    *, actor: Actor, agent: Agent, role: str, ministry: Ministry | None = None
) -> RoleGrant:
    """Grant a role to an agent (see ``_check_grant_rights`` for who may)."""
    _check_grant_rights(actor, role, ministry)
    if (
        ministry is not None
        and agent.ministry_id != ministry.pk
        and not access_for(actor.user).operator
    ):
        raise ValidationError({"agent": _("This agent does not belong to the ministry.")})
    if RoleGrant.objects.filter(agent=agent, role=role, ministry=ministry).exists():
        raise ValidationError({"role": _("This agent already holds this role.")})
    grant = RoleGrant(agent=agent, role=role, ministry=ministry, granted_by=actor.agent)
    try:
        with transaction.atomic():
            grant.save(force_insert=True)
    except IntegrityError as exc:
        raise ValidationError({"role": _("This agent already holds this role.")}) from exc
    audit_record(
        actor=actor,
        action="role_grant.create",
        target=grant,
        ministry_id=ministry.pk if ministry else None,
        data={"agent": agent.email, "role": role},
    )
    return grant


@transaction.atomic
def role_grant_invite(
    *, actor: Actor, email: str, role: str, ministry: Ministry | None = None
) -> PendingRoleGrant | RoleGrant:
    """Promise a role to someone by email: granted now if they have an account, else
    at their first login."""
    _check_grant_rights(actor, role, ministry)
    email = email.strip().lower()
    try:
        validate_agent_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": exc.messages}) from exc
    if ministry is not None:
        email_domain_check(ministry, email)
    existing = Agent.objects.filter(email=email).first()
    if existing is not None:
        # Already known: the role is given now rather than at a first login long past.
        return role_grant_create(actor=actor, agent=existing, role=role, ministry=ministry)
    pending, created = PendingRoleGrant.objects.get_or_create(
        email=email, role=role, ministry=ministry, defaults={"invited_by": actor.agent}
    )
    if created:
        audit_record(
            actor=actor,
            action="role_grant.invite",
            target=pending,
            ministry_id=ministry.pk if ministry else None,
            data={"email": email, "role": role},
        )
    return pending


@transaction.atomic
def role_grant_delete(*, actor: Actor, grant: RoleGrant) -> None:
    """Withdraw a role, under the same rules as granting it."""
    access = access_for(actor.user)
    if access.via_token:
        raise PermissionDenied(_("API tokens cannot withdraw roles."))
    if grant.role == Role.OPERATOR or grant.ministry_id is None:
        require_operator(actor)
    else:
        require_admin(actor, grant.ministry_id)
    audit_record(
        actor=actor,
        action="role_grant.delete",
        target=grant,
        ministry_id=grant.ministry_id,
        data={"agent": grant.agent.email, "role": grant.role},
    )
    grant.delete()


@transaction.atomic
def operator_bootstrap(
    *, actor: Actor, email: str, given_name: str = "", usual_name: str = ""
) -> RoleGrant:
    """Make ``email`` a platform operator from the operator's shell (no caller to check:
    whoever runs ``manage.py`` already holds the keys). Idempotent."""
    if not actor.is_system:
        raise PermissionDenied(_("Operators are bootstrapped from the command line only."))
    email = email.strip().lower()
    agent = Agent.objects.filter(email=email).first()
    if agent is None:
        agent = Agent.objects.create_user(email, given_name=given_name, usual_name=usual_name)
    grant, created = RoleGrant.objects.get_or_create(agent=agent, role=Role.OPERATOR, ministry=None)
    if created:
        audit_record(
            actor=actor,
            action="role_grant.create",
            target=grant,
            data={"agent": email, "role": Role.OPERATOR, "bootstrap": True},
        )
    return grant
