"""Agents from a ministry's CSV export: plan (preview), then apply.

Every row gets an outcome (create, update, unchanged, deactivate, or an error with
its line, column and reason). Applying writes the valid rows all together or not at
all, and applying the same file twice changes nothing the second time. Reading the
file is ``accounts.import_csv``; queueing a job is ``accounts.import_jobs``; the
worker that runs it is ``accounts.tasks``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import require_admin
from accounts.identifiers import validate_agent_email
from accounts.import_csv import FIELDS, ImportPlan, RowOutcome, control_character, decode, parse
from accounts.models import Agent, Ministry
from audit.actor import Actor
from audit.services import audit_record

# Looked up on the module at each call, so a stand-in set on licensing.services (the
# tests' race and rollback probes) applies here too.
from licensing import services as licensing_services

BATCH = 2000
LIMITS = {
    "email": 254,
    "given_name": 150,
    "usual_name": 150,
    "external_id": 255,
    "organizational_unit": 255,
}


def _in_batches(queryset, field: str, values: list, size: int = 5000):
    """Rows of ``queryset`` whose ``field`` is in ``values``, a few thousand per query
    (PostgreSQL takes at most 65,535 parameters in one statement)."""
    for start in range(0, len(values), size):
        yield from queryset.filter(**{f"{field}__in": values[start : start + size]})


def _check_row(values: dict, domains: set[str]) -> tuple[str, str] | None:
    """(column, reason) of the first problem of a row, or None."""
    for name in FIELDS:
        if (char := control_character(values.get(name, ""))) is not None:
            return name, _("Contains a control character (U+%(code)04X).") % {"code": ord(char)}
    email = values.get("email", "").lower()
    try:
        validate_agent_email(email)
    except ValidationError:
        return "email", _("“%(email)s” is not an email address.") % {"email": email}
    if email.rpartition("@")[2] not in domains:
        return "email", _("The domain of “%(email)s” is not one of the ministry's.") % {
            "email": email
        }
    for name, limit in LIMITS.items():
        if len(values.get(name, "")) > limit:
            return name, _("Longer than %(limit)d characters.") % {"limit": limit}
    return None


def _planned_action(agent: Agent | None, values: dict) -> str:
    """create, update or unchanged: what a valid row does to the agent it names."""
    if agent is None:
        return "create"
    changes = {k: v for k, v in values.items() if k != "email" and getattr(agent, k) != v}
    return "update" if changes or not agent.is_active else "unchanged"


def agent_import_plan(
    *,
    ministry: Ministry,
    raw: bytes,
    delimiter: str | None = None,
    deactivate_missing: bool = False,
    progress: Callable[[list[RowOutcome], int], None] | None = None,
) -> ImportPlan:
    """Read the file and say what applying it would do (nothing is written).

    ``progress``, if given, is told of the outcomes as they are decided, with the
    number of rows known so far.
    """
    text, encoding = decode(raw)
    rows, delimiter, outcomes = parse(text, delimiter)
    known_rows = len(rows) + len(outcomes)
    if progress:
        progress(list(outcomes), known_rows)
    domains = set(ministry.domains.values_list("domain", flat=True))
    emails = [v.get("email", "").lower() for _line, v in rows]
    listed = set(emails)
    # A NUL cannot be stored nor even looked up in PostgreSQL: such rows are errors
    # (control character) and need no lookup.
    searchable = [e for e in emails if "\x00" not in e]
    known = {a.email: a for a in _in_batches(Agent.objects.all(), "email", searchable)}
    ids = [v["external_id"] for _line, v in rows if v.get("external_id")]
    ids = [i for i in ids if "\x00" not in i]
    id_owner = {
        a.external_id: a.email
        for a in _in_batches(
            Agent.objects.filter(ministry=ministry, deleted_at__isnull=True), "external_id", ids
        )
    }
    seen: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    for line, values in rows:
        email = values.get("email", "").lower()
        values["email"] = email
        problem = _check_row(values, domains)
        if problem is None and email in seen:
            problem = ("email", _("Already on line %(line)d of this file.") % {"line": seen[email]})
        external_id = values.get("external_id", "")
        if problem is None and external_id and external_id in seen_ids:
            problem = (
                "external_id",
                _("Already on line %(line)d of this file.") % {"line": seen_ids[external_id]},
            )
        if problem is None and id_owner.get(external_id, email) != email:
            problem = ("external_id", _("Another agent of the ministry has this identifier."))
        agent = known.get(email)
        if problem is None and agent is not None and agent.ministry_id != ministry.pk:
            problem = ("email", _("This agent belongs to another ministry."))
        if problem is not None:
            outcome = RowOutcome(line, "error", email, values, *problem)
        else:
            seen[email] = line
            if external_id:
                seen_ids[external_id] = line
            outcome = RowOutcome(line, _planned_action(agent, values), email, values)
        outcomes.append(outcome)
        if progress:
            progress([outcome], known_rows)
    if deactivate_missing:
        active = Agent.objects.filter(ministry=ministry, is_active=True).values_list(
            "email", flat=True
        )
        # Agents listed in the file, even on a row in error, are never deactivated.
        leavers = [
            RowOutcome(0, "deactivate", email) for email in active.iterator() if email not in listed
        ]
        outcomes.extend(leavers)
        if progress:
            progress(leavers, known_rows + len(leavers))
    outcomes.sort(key=lambda r: (r.line == 0, r.line))
    return ImportPlan(ministry=ministry, rows=outcomes, delimiter=delimiter, encoding=encoding)


@transaction.atomic
def agent_import_apply(
    *, actor: Actor, plan: ImportPlan, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Write the plan's valid rows, all or nothing; rows in error are left out.

    Seats for new and returning agents are reserved first, under the pool's lock.
    """
    ministry = plan.ministry
    require_admin(actor, ministry.pk)
    creates = [r for r in plan.rows if r.action == "create"]
    updates = [r for r in plan.rows if r.action == "update"]
    deactivations = [r for r in plan.rows if r.action == "deactivate"]
    existing = {
        a.email: a
        for a in _in_batches(
            Agent.objects.select_for_update(), "email", [r.email for r in updates + deactivations]
        )
    }
    returning = sum(1 for r in updates if not existing[r.email].is_active)
    if creates or returning:
        licensing_services.seat_reserve(
            ministry=ministry, count=len(creates) + returning - len(deactivations)
        )
    now = timezone.now()
    # Built and written a batch at a time: 100,000 model instances at once would
    # cost hundreds of megabytes. Agents log in through ProConnect: no password.
    for start in range(0, len(creates), BATCH):
        Agent.objects.bulk_create(
            Agent(ministry=ministry, password=UNUSABLE_PASSWORD_PREFIX, **row.values)
            for row in creates[start : start + BATCH]
        )
        if progress:
            progress(min(BATCH, len(creates) - start))
    changed = []
    for row in updates:
        agent = existing[row.email]
        for name, value in row.values.items():
            setattr(agent, name, value)
        agent.is_active, agent.deactivated_at, agent.updated_at = True, None, now
        changed.append(agent)
    for row in deactivations:
        agent = existing[row.email]
        agent.is_active, agent.deactivated_at, agent.updated_at = False, now, now
        changed.append(agent)
    Agent.objects.bulk_update(
        changed,
        [
            "given_name",
            "usual_name",
            "external_id",
            "organizational_unit",
            "is_active",
            "deactivated_at",
            "updated_at",
        ],
        batch_size=2000,
    )
    if progress:
        progress(len(changed))
    counts = plan.counts
    if creates or changed:  # a file already applied changes nothing, not even the trail
        audit_record(
            actor=actor,
            action="agent.import",
            target=ministry,
            ministry_id=ministry.pk,
            data={"counts": counts, "encoding": plan.encoding},
        )
    return counts
