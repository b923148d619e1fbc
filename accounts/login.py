"""Who gets in from verified ProConnect claims, and the record of refused logins.

A known agent logs in by their ``sub``; an imported agent is bound to it at their
first login; a new agent is created when their ministry allows creation at first
login and has a free seat. Roles promised by email are granted then. Nothing is
written for a refused login but its audit event (``login_refusal_record``).
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.identifiers import validate_agent_email
from accounts.models import Agent, Ministry, PendingRoleGrant, RoleGrant
from audit.actor import Actor
from audit.services import audit_record
from licensing.services import NoFreeSeat, seat_reserve


class LoginRefused(Exception):
    """A login that must not go through; ``reason`` is a code the refusal page explains."""

    def __init__(self, reason: str, detail: str = "", claims: dict | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.claims = claims or {}


def _ministry_for_claims(claims: dict) -> Ministry | None:
    """The onboarded ministry of a login: by SIRET first, then by email domain."""
    siret = claims.get("siret")
    if isinstance(siret, str) and siret:
        ministry = Ministry.objects.filter(sirets__siret=siret).first()
        if ministry is not None:
            return ministry
    domain = str(claims.get("email", "")).rpartition("@")[2].lower()
    if domain:
        return Ministry.objects.filter(domains__domain=domain).first()
    return None


def _claims_belong_to(ministry: Ministry, claims: dict) -> bool:
    """Whether the claims' SIRET or email domain is one of ``ministry``'s."""
    siret = claims.get("siret")
    domain = str(claims.get("email", "")).rpartition("@")[2].lower()
    return (
        isinstance(siret, str) and ministry.sirets.filter(siret=siret).exists()
    ) or ministry.domains.filter(domain=domain).exists()


def _identity_fields(claims: dict) -> dict:
    fields = {
        "given_name": claims.get("given_name"),
        "usual_name": claims.get("usual_name"),
        "organizational_unit": claims.get("organizational_unit"),
    }
    return {
        k: str(v)[: 150 if k != "organizational_unit" else 255]
        for k, v in fields.items()
        if isinstance(v, str) and v
    }


def _receive_pending_grants(agent: Agent, actor: Actor) -> None:
    for pending in PendingRoleGrant.objects.filter(email=agent.email).select_for_update():
        if pending.ministry_id not in (None, agent.ministry_id):
            continue  # promised on another ministry: it stays pending
        grant, created = RoleGrant.objects.get_or_create(
            agent=agent,
            role=pending.role,
            ministry=pending.ministry,
            defaults={"granted_by": pending.invited_by},
        )
        if created:
            audit_record(
                actor=actor,
                action="role_grant.create",
                target=grant,
                ministry_id=pending.ministry_id,
                data={"agent": agent.email, "role": pending.role, "invited": True},
            )
        pending.delete()


# last_login feeds "active in the last 30 days": an hour's precision spares a write
# on every repeated login.
LAST_LOGIN_PRECISION = timedelta(hours=1)


def agent_login(*, claims: dict, ip: str | None = None) -> Agent:
    """Decide who gets in from verified ProConnect claims; raise LoginRefused otherwise.

    1. an agent bound to this ``sub``; 2. an imported agent (same email, not yet bound)
    of the ministry the claims' SIRET or email domain belongs to; 3. a new agent when
    that ministry allows creation at first login and has a free seat. Nothing is
    written for a refused login.
    """
    sub = claims.get("sub")
    email = str(claims.get("email") or "").strip().lower()
    if not isinstance(sub, str) or not sub or not email or "@" not in email:
        raise LoginRefused("claims_missing", "sub and email are required", claims)
    try:
        validate_agent_email(email)
    except ValidationError as exc:
        raise LoginRefused("claims_missing", "email is not a valid address", claims) from exc
    # A bound agent's sub never changes: the usual login reads it without a lock,
    # outside the (short) writing transaction.
    agent = Agent.objects.select_related("ministry").filter(sub=sub).first()
    if agent is None:
        agent = _agent_first_login(claims=claims, sub=sub, email=email, ip=ip)
    else:
        _check_may_log_in(agent, agent.ministry, claims)
        changes = _login_changes(agent, claims, email)
        with transaction.atomic():
            if changes:
                Agent.objects.filter(pk=agent.pk).update(**changes)
                for name, value in changes.items():
                    setattr(agent, name, value)
            _audit_login(agent, claims, ip)
    return agent


def _check_may_log_in(agent: Agent | None, ministry: Ministry | None, claims: dict) -> None:
    if agent is not None and not agent.is_active:
        raise LoginRefused("account_deactivated", agent.email, claims)
    if ministry is not None and ministry.state == Ministry.State.SUSPENDED:
        raise LoginRefused("ministry_suspended", ministry.code, claims)


def _login_changes(agent: Agent, claims: dict, email: str) -> dict:
    """What a login changes on a known agent: names from the claims, and last_login."""
    changes = {k: v for k, v in _identity_fields(claims).items() if getattr(agent, k) != v}
    if (
        email != agent.email
        and (
            agent.ministry is None
            or agent.ministry.domains.filter(domain=email.rpartition("@")[2]).exists()
        )
        and not Agent.objects.filter(email=email).exists()
    ):
        changes["email"] = email
    now = timezone.now()
    if changes or not agent.last_login or now - agent.last_login > LAST_LOGIN_PRECISION:
        changes.update(last_login=now, updated_at=now)
    return changes


def _audit_login(agent: Agent, claims: dict, ip: str | None) -> None:
    audit_record(
        actor=Actor(user=agent, ip=ip, label=agent.email),
        action="auth.login",
        target=agent,
        ministry_id=agent.ministry_id,
        data={"acr": claims.get("acr"), "idp_id": claims.get("idp_id")},
    )


@transaction.atomic
def _agent_first_login(*, claims: dict, sub: str, email: str, ip: str | None) -> Agent:
    """Bind an imported agent to their sub, or create one; then grant promised roles."""
    actor = Actor(user=None, ip=ip, label=email)
    agent = (
        Agent.objects.select_for_update(of=("self",))
        .select_related("ministry")
        .filter(email=email)
        .first()
    )
    if agent is not None and agent.sub and agent.sub != sub:
        raise LoginRefused("identity_conflict", "email bound to another sub", claims)
    if agent is None:
        ministry = _ministry_for_claims(claims)
        if ministry is None:
            raise LoginRefused("ministry_not_onboarded", email, claims)
    else:
        ministry = agent.ministry
        if ministry is not None and not _claims_belong_to(ministry, claims):
            raise LoginRefused("ministry_mismatch", email, claims)
    _check_may_log_in(agent, ministry, claims)

    if agent is None:
        # An admin named at onboarding is expected even where JIT creation is off.
        invited = PendingRoleGrant.objects.filter(email=email, ministry=ministry).exists()
        if not (ministry.jit_provisioning or invited):
            raise LoginRefused("not_provisioned", email, claims)
        try:
            seat_reserve(ministry=ministry)
        except NoFreeSeat as exc:
            raise LoginRefused("no_free_seat", str(exc), claims) from exc
        agent = Agent(
            email=email,
            ministry=ministry,
            sub=sub,
            last_login=timezone.now(),
            **_identity_fields(claims),
        )
        agent.set_unusable_password()
        try:
            with transaction.atomic():
                agent.save(force_insert=True)
        except IntegrityError as exc:  # the same person logging in twice at once
            raise LoginRefused("concurrent_login", email, claims) from exc
        audit_record(
            actor=actor,
            action="agent.create",
            target=agent,
            ministry_id=ministry.pk,
            data={"email": email, "jit": True, "invited": invited},
        )
    else:
        changes = {**_login_changes(agent, claims, email), "sub": sub}
        Agent.objects.filter(pk=agent.pk).update(**changes)
        for name, value in changes.items():
            setattr(agent, name, value)
        audit_record(
            actor=actor,
            action="agent.bind",
            target=agent,
            ministry_id=agent.ministry_id,
            data={"email": agent.email},
        )
    _receive_pending_grants(agent, actor)
    _audit_login(agent, claims, ip)
    return agent


def login_refusal_record(
    *, reason: str, claims: dict | None, ip: str | None, detail: str = ""
) -> None:
    """Audit a refused login (never with a token, only the reason and who it seemed to be)."""
    claims = claims or {}
    email = _printable(claims.get("email") or "")[:254]
    ministry = _ministry_for_claims(claims) if claims else None
    audit_record(
        actor=Actor(user=None, ip=ip, label=email or "anonymous"),
        action="auth.login_refused",
        ministry_id=ministry.pk if ministry else None,
        data={"reason": reason, "detail": _printable(detail)[:200], "email": email or None},
    )


def _printable(text: str) -> str:
    """Drop control characters (a NUL cannot even be stored in PostgreSQL's jsonb)."""
    return "".join(ch for ch in str(text) if ch.isprintable())
