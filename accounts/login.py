"""Who gets in from verified ProConnect claims, and the record of refused logins.

A known agent logs in by their ``sub``; an imported agent is bound to it at their
first login; a new agent is created when their ministry allows creation at first
login and has a free seat. Roles promised by email are granted then. Nothing is
written for a refused login but its audit event (``login_refusal_record``).

Which ministry a login belongs to comes from two claims, the establishment's
``siret`` and the ``email``'s domain, each naming at most one ministry:

- at a first login they must not name two different ministries (``ministry_conflict``:
  an address of ministry A must never open an account in ministry B); one that names
  no ministry leaves the decision to the other;
- an agent is created only with an address in one of their ministry's domains, as
  every other way of creating an agent requires (``email_domain_unknown`` otherwise);
  an imported agent, whose address the ministry gave, is bound when the SIRET or the
  domain is their ministry's;
- an agent already bound whose claims now name another ministry still logs in to
  their own (their ``sub`` is theirs, and their ministry is what their directory
  says), but the conflict is audited for each ministry concerned and logged, and
  their names and address are not taken from those claims.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.utils import timezone

from accounts.identifiers import validate_agent_email
from accounts.models import (
    Agent,
    Ministry,
    MinistryDomain,
    MinistrySiret,
    PendingRoleGrant,
    RoleGrant,
)
from audit.actor import Actor
from audit.services import audit_record
from licensing.services import NoFreeSeat, seat_reserve

logger = logging.getLogger(__name__)


class LoginRefused(Exception):
    """A login that must not go through; ``reason`` is a code the refusal page explains.

    ``claimed`` is set when the claims named ministries that disagree: the refusal is
    then audited for each of them, and the page names them.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        claims: dict | None = None,
        claimed: ClaimedMinistries | None = None,
    ):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.claims = claims or {}
        self.claimed = claimed


@dataclass(frozen=True)
class ClaimedMinistries:
    """The ministries a login's claims name: by the establishment's SIRET and by the
    email's domain (``None``: that claim names no onboarded ministry)."""

    by_siret: Ministry | None
    by_domain: Ministry | None

    @property
    def disagree(self) -> bool:
        """Both claims name a ministry, and not the same one."""
        return bool(self.by_siret and self.by_domain and self.by_siret.pk != self.by_domain.pk)

    @property
    def one(self) -> Ministry | None:
        """The ministry the claims name when they agree (the domain's, else the SIRET's)."""
        return self.by_domain or self.by_siret

    def concerned(self) -> list[Ministry]:
        """Each distinct ministry named."""
        named = [m for m in (self.by_domain, self.by_siret) if m is not None]
        return [m for i, m in enumerate(named) if m.pk not in {n.pk for n in named[:i]}]

    def audit_data(self) -> dict:
        return {
            "siret_ministry": self.by_siret.code if self.by_siret else None,
            "domain_ministry": self.by_domain.code if self.by_domain else None,
        }


def _email_domain(claims: dict) -> str:
    return str(claims.get("email") or "").strip().rpartition("@")[2].lower()


def _claimed_ministry_ids(claims: dict) -> dict:
    """``{"siret": id, "domain": id}`` for the claims that name a ministry (one query)."""
    siret = claims.get("siret")
    siret = siret if isinstance(siret, str) else ""
    return dict(
        MinistrySiret.objects.filter(siret=siret)
        .annotate(kind=Value("siret"))
        .values_list("kind", "ministry_id")
        .union(
            MinistryDomain.objects.filter(domain=_email_domain(claims))
            .annotate(kind=Value("domain"))
            .values_list("kind", "ministry_id")
        )
    )


def claimed_ministries(claims: dict, rows: dict | None = None) -> ClaimedMinistries:
    """The ministries the claims' SIRET and email domain name (``rows``: their ids, when
    already read)."""
    rows = _claimed_ministry_ids(claims) if rows is None else rows
    if not rows:
        return ClaimedMinistries(None, None)
    ministries = Ministry.objects.in_bulk(set(rows.values()))
    return ClaimedMinistries(
        by_siret=ministries.get(rows.get("siret")), by_domain=ministries.get(rows.get("domain"))
    )


def _conflict_refused(claimed: ClaimedMinistries, claims: dict) -> LoginRefused:
    """A first login whose SIRET and address name two ministries: logged and refused."""
    data = claimed.audit_data()
    logger.warning(
        "First login refused: the SIRET names ministry %s, the email domain ministry %s",
        data["siret_ministry"],
        data["domain_ministry"],
    )
    detail = f"SIRET names {data['siret_ministry']}, email domain {data['domain_ministry']}"
    return LoginRefused("ministry_conflict", detail, claims, claimed)


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
        conflict = _bound_agent_conflict(agent, claims)
        changes = _login_changes(agent, claims, email, from_claims=conflict is None)
        with transaction.atomic():
            if changes:
                Agent.objects.filter(pk=agent.pk).update(**changes)
                for name, value in changes.items():
                    setattr(agent, name, value)
            _audit_login(agent, claims, ip)
            if conflict is not None:
                _audit_bound_conflict(agent, conflict, ip)
    return agent


def _bound_agent_conflict(agent: Agent, claims: dict) -> ClaimedMinistries | None:
    """The claimed ministries when they name another ministry than the agent's own.

    National staff (no ministry) belong to none, so their claims conflict with none.
    """
    if agent.ministry_id is None:
        return None
    rows = _claimed_ministry_ids(claims)
    if set(rows.values()) <= {agent.ministry_id}:
        return None  # the usual login: one query
    return claimed_ministries(claims, rows)


def _audit_bound_conflict(agent: Agent, claimed: ClaimedMinistries, ip: str | None) -> None:
    """Let in to their own ministry, but on the record of every ministry concerned."""
    data = {**claimed.audit_data(), "agent_ministry": agent.ministry.code, "outcome": "let_in"}
    logger.warning(
        "Agent %s of ministry %s logged in with claims naming another ministry "
        "(SIRET: %s, email domain: %s); names not updated",
        agent.pk,
        data["agent_ministry"],
        data["siret_ministry"],
        data["domain_ministry"],
    )
    ministries = {m.pk: m for m in (agent.ministry, *claimed.concerned())}
    for ministry in ministries.values():
        audit_record(
            actor=Actor(user=agent, ip=ip, label=agent.email),
            action="auth.ministry_conflict",
            target=agent,
            ministry_id=ministry.pk,
            data=data,
        )


def _check_may_log_in(agent: Agent | None, ministry: Ministry | None, claims: dict) -> None:
    if agent is not None and not agent.is_active:
        raise LoginRefused("account_deactivated", agent.email, claims)
    if ministry is not None and ministry.state == Ministry.State.SUSPENDED:
        raise LoginRefused("ministry_suspended", ministry.code, claims)


def _login_changes(agent: Agent, claims: dict, email: str, *, from_claims: bool = True) -> dict:
    """What a login changes on a known agent: names and address from the claims (unless
    they are not to be trusted, ``from_claims=False``), and last_login."""
    changes = {}
    if from_claims:
        changes = {k: v for k, v in _identity_fields(claims).items() if getattr(agent, k) != v}
    if (
        from_claims
        and email != agent.email
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
    claimed = claimed_ministries(claims)
    if agent is None:
        ministry = claimed.one
        if ministry is None:
            raise LoginRefused("ministry_not_onboarded", email, claims)
        if claimed.disagree:
            raise _conflict_refused(claimed, claims)
        if claimed.by_domain is None:
            raise LoginRefused("email_domain_unknown", email, claims)
    else:
        ministry = agent.ministry
        if ministry is not None:
            if claimed.disagree:
                raise _conflict_refused(claimed, claims)
            if claimed.one is None or claimed.one.pk != ministry.pk:
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


@transaction.atomic
def login_refusal_record(
    *,
    reason: str,
    claims: dict | None,
    ip: str | None,
    detail: str = "",
    claimed: ClaimedMinistries | None = None,
) -> None:
    """Audit a refused login (never with a token, only the reason and who it seemed to be).

    The event goes to the ministry the claims name; when they name two (``claimed``,
    a conflict), each of them gets it, with both named.
    """
    claims = claims or {}
    email = _printable(claims.get("email") or "")[:254]
    data = {"reason": reason, "detail": _printable(detail)[:200], "email": email or None}
    if claimed is not None:
        data.update(claimed.audit_data())
        ministries = claimed.concerned()
    else:
        ministries = [claimed_ministries(claims).one if claims else None]
    for ministry in ministries:
        audit_record(
            actor=Actor(user=None, ip=ip, label=email or "anonymous"),
            action="auth.login_refused",
            ministry_id=ministry.pk if ministry else None,
            data=data,
        )


def _printable(text: str) -> str:
    """Drop control characters (a NUL cannot even be stored in PostgreSQL's jsonb)."""
    return "".join(ch for ch in str(text) if ch.isprintable())
