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
