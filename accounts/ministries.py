"""Writes on ministries: onboarding one, changing its settings, identifiers (email
domains, SIRETs), residency tags, rollout goal and milestones.

Operators only. Each write validates everything first, writes atomically and records
an audit event in the same transaction. Public to other apps: ``email_domain_check``
(scim checks a pushed user's email with it) and the ``*_clean``/``*_check``
validators the console's onboarding form runs before it submits.
"""

from __future__ import annotations

import re
from datetime import date

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.access import require_operator
from accounts.identifiers import validate_email_domain, validate_siren, validate_siret
from accounts.models import Ministry, MinistryDomain, MinistrySiret, RolloutMilestone
from audit.actor import Actor
from audit.services import audit_record
from controlplane.updates import fields_apply


def _normalise_list(values, field: str, validator) -> list[str]:
    cleaned = []
    for value in values:
        value = (value or "").strip().lower()
        try:
            validator(value)
        except ValidationError as exc:
            raise ValidationError({field: exc.messages}) from exc
        if value in cleaned:
            raise ValidationError({field: _("“%(value)s” is listed twice.") % {"value": value}})
        cleaned.append(value)
    return cleaned


def _check_owned_elsewhere(ministry: Ministry | None, domains, sirets) -> None:
    """Name the identifiers another ministry owns (the database refuses them anyway)."""
    others = MinistryDomain.objects.filter(domain__in=domains)
    others_siret = MinistrySiret.objects.filter(siret__in=sirets)
    if ministry is not None:
        others = others.exclude(ministry=ministry)
        others_siret = others_siret.exclude(ministry=ministry)
    errors = {}
    taken = sorted(others.values_list("domain", flat=True))
    if taken:
        errors["domains"] = _("Already owned by another ministry: %(list)s.") % {
            "list": ", ".join(taken)
        }
    taken = sorted(others_siret.values_list("siret", flat=True))
    if taken:
        errors["sirets"] = _("Already owned by another ministry: %(list)s.") % {
            "list": ", ".join(taken)
        }
    if errors:
        raise ValidationError(errors)


def ministry_identifiers_check(*, domains, sirets) -> tuple[list[str], list[str]]:
    """Domains and SIRETs of a ministry to be, normalised and checked (valid, listed once,
    owned by no other ministry): what a form asks before onboarding."""
    domains = _normalise_list(domains, "domains", validate_email_domain)
    sirets = _normalise_list(sirets, "sirets", validate_siret)
    _check_owned_elsewhere(None, domains, sirets)
    return domains, sirets


def email_domain_check(ministry: Ministry, email: str) -> None:
    """Refuse an email whose domain is not one of the ministry's email domains.

    Public: agents, grants and scim check an address with it before they write.
    """
    domain = email.rpartition("@")[2]
    if not ministry.domains.filter(domain=domain).exists():
        raise ValidationError(
            {
                "email": _("The domain “%(domain)s” is not one of the ministry's email domains.")
                % {"domain": domain}
            }
        )


def _set_identifiers(
    ministry: Ministry, domains: list[str] | None, sirets: list[str] | None
) -> None:
    if domains is not None:
        MinistryDomain.objects.filter(ministry=ministry).exclude(domain__in=domains).delete()
        existing = set(ministry.domains.values_list("domain", flat=True))
        MinistryDomain.objects.bulk_create(
            MinistryDomain(ministry=ministry, domain=d) for d in domains if d not in existing
        )
    if sirets is not None:
        MinistrySiret.objects.filter(ministry=ministry).exclude(siret__in=sirets).delete()
        existing = set(ministry.sirets.values_list("siret", flat=True))
        MinistrySiret.objects.bulk_create(
            MinistrySiret(ministry=ministry, siret=s) for s in sirets if s not in existing
        )


def _save_identifiers(ministry, domains, sirets) -> None:
    """Write domains and SIRETs; a concurrent claim the database refuses becomes a 400."""
    try:
        with transaction.atomic():
            _set_identifiers(ministry, domains, sirets)
    except IntegrityError as exc:
        raise ValidationError(
            {"domains": _("A domain or SIRET was just claimed by another ministry.")}
        ) from exc


MINISTRY_FIELDS = (
    "name",
    "state",
    "jit_provisioning",
    "residency_tags",
    "retention_days",
    "rollout_target_agents",
    "rollout_target_date",
)

# A media node tag: lower-case letters, digits and dashes (``secnumcloud``, ``hds``).
RESIDENCY_TAG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def residency_tags_clean(tags) -> list[str]:
    """Residency tags are lower-case slugs, each listed once."""
    if not isinstance(tags, list | tuple):
        raise ValidationError({"residency_tags": _("A list of tags is expected.")})
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not RESIDENCY_TAG.match(tag) or len(tag) > 50:
            raise ValidationError(
                {
                    "residency_tags": _(
                        "“%(tag)s” is not a valid tag: use lower-case letters, digits and "
                        "dashes (for example “secnumcloud”)."
                    )
                    % {"tag": tag}
                }
            )
        if tag in cleaned:
            raise ValidationError(
                {"residency_tags": _("“%(value)s” is listed twice.") % {"value": tag}}
            )
        cleaned.append(tag)
    return cleaned


def rollout_goal_clean(
    *, target_agents: int | None, target_date: date | None, milestones
) -> list[dict]:
    """Check a rollout goal and its milestones; return the milestones sorted by date.

    The goal's agents are positive; milestones need a goal, fall on distinct dates no
    later than the goal's, and ask for a positive number of agents that never
    decreases from one date to the next nor exceeds the goal.
    """
    if target_agents is not None and target_agents < 1:
        raise ValidationError({"rollout_target_agents": _("The goal must be at least one agent.")})
    if (target_agents is None) != (target_date is None):
        field = "rollout_target_date" if target_date is None else "rollout_target_agents"
        raise ValidationError(
            {field: _("A rollout goal needs both a number of agents and a date.")}
        )
    cleaned = []
    for item in milestones or ():
        due_on, agents = item.get("due_on"), item.get("target_agents")
        if not isinstance(due_on, date) or not isinstance(agents, int):
            raise ValidationError(
                {"milestones": _("Each milestone needs a date and a number of agents.")}
            )
        cleaned.append(
            {"due_on": due_on, "target_agents": agents, "label": (item.get("label") or "").strip()}
        )
    if cleaned and target_date is None:
        raise ValidationError(
            {"milestones": _("Set the rollout goal (agents and date) before its milestones.")}
        )
    cleaned.sort(key=lambda m: m["due_on"])
    errors = []
    previous = None
    for milestone in cleaned:
        values = {"date": milestone["due_on"].isoformat(), "agents": milestone["target_agents"]}
        if previous is not None and milestone["due_on"] == previous["due_on"]:
            errors.append(_("Two milestones fall on %(date)s.") % values)
        if milestone["due_on"] > target_date:
            errors.append(
                _("The milestone of %(date)s falls after the goal's date (%(goal)s).")
                % {**values, "goal": target_date.isoformat()}
            )
        if milestone["target_agents"] < 1:
            errors.append(_("The milestone of %(date)s must be at least one agent.") % values)
        elif milestone["target_agents"] > target_agents:
            errors.append(
                _("The milestone of %(date)s asks for more agents than the goal (%(goal)d).")
                % {**values, "goal": target_agents}
            )
        if previous is not None and milestone["target_agents"] < previous["target_agents"]:
            errors.append(
                _(
                    "The milestone of %(date)s asks for fewer agents (%(agents)d) than the one "
                    "before it (%(previous)d): milestones never go down."
                )
                % {**values, "previous": previous["target_agents"]}
            )
        if len(milestone["label"]) > 200:
            errors.append(_("The label of the milestone of %(date)s is too long.") % values)
        previous = milestone
    if errors:
        raise ValidationError({"milestones": errors})
    return cleaned


def _set_milestones(ministry: Ministry, milestones: list[dict]) -> None:
    ministry.milestones.all().delete()
    RolloutMilestone.objects.bulk_create(
        RolloutMilestone(ministry=ministry, **milestone) for milestone in milestones
    )


def _milestones_data(milestones: list[dict]) -> list[dict]:
    return [{**m, "due_on": m["due_on"].isoformat()} for m in milestones]


# The rollout only moves forward; any state may be suspended, and a suspended
# ministry resumes at any rollout stage.
STATE_MOVES = {
    "pilot": {"rolling_out", "suspended"},
    "rolling_out": {"generalised", "suspended"},
    "generalised": {"suspended"},
    "suspended": {"pilot", "rolling_out", "generalised"},
}


def _check_state_move(current: str, new: str) -> None:
    if new != current and new not in STATE_MOVES.get(current, set()):
        raise ValidationError(
            {
                "state": _(
                    "A ministry cannot go from “%(current)s” to “%(new)s”: the rollout only "
                    "moves forward (pilot, rolling out, generalised), and any state may be "
                    "suspended."
                )
                % {"current": current, "new": new}
            }
        )


@transaction.atomic
def ministry_create(
    *,
    actor: Actor,
    code: str,
    name: str,
    siren: str,
    domains: list[str] = (),
    sirets: list[str] = (),
    milestones: list[dict] = (),
    **fields,
) -> Ministry:
    """Onboard a ministry (operators only), with its rollout goal and milestones."""
    require_operator(actor)
    try:
        validate_siren(siren)
    except ValidationError as exc:
        raise ValidationError({"siren": exc.messages}) from exc
    if Ministry.objects.filter(code=code).exists():
        raise ValidationError({"code": _("A ministry with this code already exists.")})
    if Ministry.objects.filter(siren=siren).exists():
        raise ValidationError({"siren": _("A ministry with this SIREN already exists.")})
    domains = _normalise_list(domains, "domains", validate_email_domain)
    sirets = _normalise_list(sirets, "sirets", validate_siret)
    _check_owned_elsewhere(None, domains, sirets)
    unknown = set(fields) - set(MINISTRY_FIELDS)
    if unknown:
        raise ValueError(f"unknown ministry fields: {sorted(unknown)}")
    if "residency_tags" in fields:
        fields["residency_tags"] = residency_tags_clean(fields["residency_tags"])
    milestones = rollout_goal_clean(
        target_agents=fields.get("rollout_target_agents"),
        target_date=fields.get("rollout_target_date"),
        milestones=milestones,
    )
    ministry = Ministry(code=code, name=name, siren=siren, **fields)
    ministry.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            ministry.save(force_insert=True)
    except IntegrityError as exc:
        raise ValidationError(
            {"code": _("A ministry with this code or SIREN already exists.")}
        ) from exc
    _save_identifiers(ministry, domains, sirets)
    _set_milestones(ministry, milestones)
    audit_record(
        actor=actor,
        action="ministry.create",
        target=ministry,
        ministry_id=ministry.pk,
        data={
            "code": code,
            "name": name,
            "siren": siren,
            "domains": domains,
            "sirets": sirets,
            **fields,
            **({"milestones": _milestones_data(milestones)} if milestones else {}),
        },
    )
    return ministry


@transaction.atomic
def ministry_update(
    *,
    actor: Actor,
    ministry: Ministry,
    domains: list[str] | None = None,
    sirets: list[str] | None = None,
    milestones: list[dict] | None = None,
    **fields,
) -> Ministry:
    """Change a ministry's settings, identifiers, rollout goal and milestones
    (operators only); milestones, when given, replace the ministry's."""
    require_operator(actor)
    ministry = Ministry.objects.select_for_update().get(pk=ministry.pk)
    if "state" in fields:
        _check_state_move(ministry.state, fields["state"])
    if "residency_tags" in fields:
        fields["residency_tags"] = residency_tags_clean(fields["residency_tags"])
    changes = fields_apply(ministry, fields, allowed=MINISTRY_FIELDS)
    goal_changed = milestones is not None or {
        "rollout_target_agents",
        "rollout_target_date",
    } & set(fields)
    if goal_changed:
        # The goal and the milestones are checked together, as they will stand.
        current = list(ministry.milestones.values("due_on", "target_agents", "label"))
        cleaned = rollout_goal_clean(
            target_agents=ministry.rollout_target_agents,
            target_date=ministry.rollout_target_date,
            milestones=current if milestones is None else milestones,
        )
        if milestones is not None and cleaned != current:
            changes["milestones"] = _milestones_data(cleaned)
    if domains is not None:
        domains = _normalise_list(domains, "domains", validate_email_domain)
        changes["domains"] = domains
    if sirets is not None:
        sirets = _normalise_list(sirets, "sirets", validate_siret)
        changes["sirets"] = sirets
    _check_owned_elsewhere(ministry, domains or [], sirets or [])
    ministry.full_clean(validate_unique=False)
    ministry.save()
    _save_identifiers(ministry, domains, sirets)
    if "milestones" in changes:
        _set_milestones(ministry, cleaned)
    audit_record(
        actor=actor,
        action="ministry.update",
        target=ministry,
        ministry_id=ministry.pk,
        data=changes,
    )
    return ministry
