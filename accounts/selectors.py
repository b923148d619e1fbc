"""Reads of ministries, agents, grants and tokens, already scoped to the caller.

A base module of accounts: it reads accounts' own tables only (a figure that needs
seats or meetings is read by the app above that owns them, such as
``usage.selectors.ministry_checklist``).
"""

from datetime import timedelta

from django.db.models import BooleanField, Count, ExpressionWrapper, Prefetch, Q, QuerySet
from django.utils import timezone

from accounts.access import access_for
from accounts.models import (
    Agent,
    AgentImportJob,
    ApiToken,
    Ministry,
    MinistryDomain,
    MinistrySiret,
    RoleGrant,
)


def ministry_list(*, user) -> QuerySet[Ministry]:
    """Every ministry for operators and national auditors; otherwise the caller's own."""
    access = access_for(user)
    ministries = Ministry.objects.prefetch_related(
        Prefetch("domains", queryset=MinistryDomain.objects.order_by("domain")),
        Prefetch("sirets", queryset=MinistrySiret.objects.order_by("siret")),
        "milestones",
    )
    readable = access.readable_ministries
    if readable is None:
        return ministries
    ids = set(readable)
    if access.own_ministry is not None:
        ids.add(access.own_ministry)
    return ministries.filter(pk__in=ids)


def ministry_administrable(*, user) -> QuerySet[Ministry]:
    """Ministries whose agents, grants and tokens the caller may change."""
    access = access_for(user)
    if access.operator:
        return Ministry.objects.all()
    return Ministry.objects.filter(pk__in=access.admin_of)


def agent_list(*, user) -> QuerySet[Agent]:
    """Agents of the ministries the caller reads; an agent without a role sees only
    themselves."""
    access = access_for(user)
    agents = Agent.objects.select_related("ministry")
    readable = access.readable_ministries
    if readable is None:
        return agents
    if access.via_token:
        return agents.filter(ministry_id__in=readable)
    if not getattr(user, "is_authenticated", False):
        return agents.none()
    return agents.filter(Q(ministry_id__in=readable) | Q(pk=user.pk))


def role_grant_list(*, user) -> QuerySet[RoleGrant]:
    """Grants within the caller's ministries, and the caller's own grants."""
    access = access_for(user)
    grants = RoleGrant.objects.select_related("agent", "ministry")
    readable = access.readable_ministries
    if readable is None:
        return grants
    if access.via_token:
        return grants.filter(ministry_id__in=readable)
    if not getattr(user, "is_authenticated", False):
        return grants.none()
    return grants.filter(Q(ministry_id__in=readable) | Q(agent_id=user.pk))


def api_token_list(*, user) -> QuerySet[ApiToken]:
    """Token metadata (never secrets) of the ministries the caller reads."""
    access = access_for(user)
    tokens = ApiToken.objects.select_related("ministry", "created_by")
    readable = access.readable_ministries
    if readable is None:
        return tokens
    return tokens.filter(ministry_id__in=readable)


def agent_import_job_list(*, user) -> QuerySet[AgentImportJob]:
    """Import jobs of the ministries the caller reads (the file's content left unread)."""
    readable = access_for(user).readable_ministries
    jobs = (
        AgentImportJob.objects.select_related("ministry")
        .defer("content", "errors_csv")
        .annotate(has_errors=ExpressionWrapper(~Q(errors_csv=""), output_field=BooleanField()))
    )
    return jobs if readable is None else jobs.filter(ministry_id__in=readable)


# The figures about agents, each with one name and one definition (the console and
# the API label them the same way):
# - agents with a seat: active (not deactivated) accounts; each uses a licence seat.
# - agents logged in (30 days): agents with a seat who logged in within
#   RECENT_LOGIN_DAYS; what the rollout goal counts.
# - agents in meetings: distinct agents with a participant session in a period
#   (usage.selectors and the daily roll-up).
RECENT_LOGIN_DAYS = 30


def agents_with_seat_count(path: str = "agents") -> Count:
    """An annotation counting agents with a seat through ``path`` (``agents`` from a
    ministry, ``ministry__agents`` from a licence pool)."""
    return Count(path, filter=Q(**{f"{path}__is_active": True}))


def agents_with_seat(*, ministry_id) -> int:
    """A ministry's agents with a seat: its active (not deactivated) accounts."""
    return Agent.objects.filter(ministry_id=ministry_id, is_active=True).count()


def ministry_rollout_progress(*, ministry: Ministry) -> dict:
    """Where a ministry stands against its rollout goal: agents logged in within the
    last 30 days, the goal, the share reached, and each milestone reached or not."""
    since = timezone.now() - timedelta(days=RECENT_LOGIN_DAYS)
    active = ministry.agents.filter(is_active=True, last_login__gte=since).count()
    target = ministry.rollout_target_agents
    milestones = [
        {
            "due_on": m.due_on,
            "target_agents": m.target_agents,
            "label": m.label,
            "reached": active >= m.target_agents,
            "late": active < m.target_agents and m.due_on < timezone.localdate(),
        }
        for m in ministry.milestones.all()
    ]
    return {
        "agents_logged_in": active,
        "target": target,
        "target_date": ministry.rollout_target_date,
        "percent": min(100, round(100 * active / target)) if target else None,
        "milestones": milestones,
    }
