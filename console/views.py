"""Console pages: login, logout, one home page per role, CSV imports, and the
operators' ministry onboarding wizard and ministry pages."""

import csv
import io
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from accounts import selectors
from accounts.access import access_for
from accounts.import_jobs import agent_import_job_create
from accounts.ministries import STATE_MOVES, ministry_update
from accounts.models import Agent, AgentImportJob, Ministry
from accounts.onboarding import ministry_onboard
from audit.actor import Actor
from console import onboarding as onboarding_steps
from usage.selectors import ministry_checklist


@login_required
def home(request):
    """The caller's home: the fleet for operators, their ministries for admins and
    auditors, their own profile for every agent."""
    access = access_for(request.user)
    ministries = (
        selectors.ministry_list(user=request.user)
        .annotate(
            agents_with_seat=selectors.agents_with_seat_count(),
            accounts=Count("agents"),
        )
        .order_by("name")
    )
    if not access.is_staff_role:
        ministries = ministries.none()
    states = dict.fromkeys(Ministry.State.values, 0)
    for ministry in ministries:
        states[ministry.state] += 1
    checklists = [
        (m, ministry_checklist(ministry=m))
        for m in Ministry.objects.filter(pk__in=access.admin_of).order_by("name")
    ]
    return render(
        request,
        "console/home.html",
        {
            "ministries": ministries,
            "state_counts": [(Ministry.State(s).label, n) for s, n in states.items()],
            "me": request.user,
            "checklists": checklists,
        },
    )


@require_http_methods(["GET", "POST"])
def login_page(request):
    """ProConnect login; with DEBUG on, the demo also lists its accounts to pick from."""
    if request.user.is_authenticated:
        return redirect("console:home")
    demo_agents = []
    if settings.DEMO_LOGIN:
        if request.method == "POST":
            agent = Agent.objects.filter(
                email__iexact=request.POST.get("email", ""), is_active=True
            ).first()
            if agent is None:
                raise Http404("Unknown demo account")
            login(request, agent, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("console:home")
        demo_agents = (
            Agent.objects.filter(is_active=True)
            .select_related("ministry")
            .prefetch_related("grants")
            .order_by("ministry__name", "email")
        )
    elif request.method == "POST":
        return redirect("console:login")
    return render(
        request,
        "console/login.html",
        {
            "demo_agents": demo_agents,
            "oidc_enabled": settings.OIDC_ENABLED,
            "expired": "expired" in request.GET,
            "logged_out": "logged_out" in request.GET,
        },
    )


def _import_job_or_404(request, pk):
    job = selectors.agent_import_job_list(user=request.user).filter(pk=pk).first()
    if job is None:
        raise Http404("No such import")
    return job


@login_required
@require_http_methods(["GET", "POST"])
def imports(request):
    """CSV imports: upload an export for a preview; the list of past imports."""
    ministries = selectors.ministry_administrable(user=request.user).order_by("name")
    error = ""
    if request.method == "POST":
        if not ministries.exists():
            raise PermissionDenied
        ministry = ministries.filter(code=request.POST.get("ministry", "")).first()
        upload = request.FILES.get("file")
        if ministry is None or upload is None:
            error = _("Choose a ministry and a CSV file.")
        elif upload.size > settings.AGENT_IMPORT_MAX_BYTES:
            error = _("The file is %(size)d MB; the limit is %(max)d MB.") % {
                "size": upload.size // 1_000_000,
                "max": settings.AGENT_IMPORT_MAX_BYTES // 1_000_000,
            }
        else:
            job = agent_import_job_create(
                actor=Actor.from_request(request),
                ministry=ministry,
                content=upload.read(),
                filename=upload.name,
                deactivate_missing=bool(request.POST.get("deactivate")),
            )
            return redirect("console:import", pk=job.pk)
    jobs = selectors.agent_import_job_list(user=request.user)[:50]
    return render(
        request, "console/imports.html", {"ministries": ministries, "jobs": jobs, "error": error}
    )


@login_required
@require_http_methods(["GET", "POST"])
def import_detail(request, pk):
    """One import: its progress, its outcome, and the button that applies a preview."""
    job = _import_job_or_404(request, pk)
    if request.method == "POST":
        if job.apply or job.state != "done":
            return redirect("console:import", pk=job.pk)
        applied = agent_import_job_create(
            actor=Actor.from_request(request),
            ministry=job.ministry,
            content=bytes(AgentImportJob.objects.get(pk=job.pk).content),
            filename=job.filename,
            deactivate_missing=job.deactivate_missing,
            apply=True,
        )
        return redirect("console:import", pk=applied.pk)
    full = AgentImportJob.objects.only("errors_csv").get(pk=job.pk)
    error_rows = _error_rows(full.errors_csv)[:50]
    return render(
        request,
        "console/import_detail.html",
        {
            "job": job,
            "error_rows": error_rows,
            "running": job.state in ("pending", "running"),
            "percent": min(100, 100 * job.rows_done // job.rows_total) if job.rows_total else None,
            "can_apply": not job.apply
            and job.state == "done"
            and access_for(request.user).can_admin(job.ministry_id),
        },
    )


def _error_rows(errors_csv: str) -> list[list[str]]:
    """The error file's rows, without its header. It is written with the uploaded file's
    separator (`;` for what French Excel saves), which follows the header's first cell."""
    delimiter = errors_csv[4:5] if errors_csv.startswith("line") else ","
    return list(csv.reader(io.StringIO(errors_csv), delimiter=delimiter))[1:]


def operator_required(view):
    """Operators only: anonymous callers go to the login page, anyone else gets 403."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not access_for(request.user).operator:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


@operator_required
@require_http_methods(["GET", "POST"])
def onboarding(request, step: int = 1):
    """Onboard a ministry step by step; the draft stays in the session until confirmed."""
    if not 1 <= step <= onboarding_steps.LAST:
        raise Http404("No such step")
    draft = onboarding_steps.draft_of(request.session)
    if request.method == "POST" and "cancel" in request.POST:
        request.session.pop(onboarding_steps.SESSION_KEY, None)
        messages.info(request, _("The onboarding was abandoned; nothing was saved."))
        return redirect("console:home")
    missing = onboarding_steps.first_incomplete_step(draft, step)
    if missing is not None:
        return redirect("console:onboarding", step=missing)
    current = onboarding_steps.STEPS[step - 1]
    if current.form is None:
        return _onboarding_review(request, draft)
    if request.method == "POST":
        draft[str(step)] = onboarding_steps.raw_step_data(current, request.POST)
        request.session[onboarding_steps.SESSION_KEY] = draft
        if "back" in request.POST:
            return redirect("console:onboarding", step=max(1, step - 1))
        form = onboarding_steps.bound_form(current, draft)
        if form.is_valid():
            return redirect("console:onboarding", step=step + 1)
    else:
        form = onboarding_steps.bound_form(current, draft)
        if str(step) in draft:
            form.is_valid()  # show what is still wrong in the saved entries
    return render(request, "console/onboarding.html", _onboarding_context(current, form=form))


def _onboarding_context(current, **extra) -> dict:
    following = (
        onboarding_steps.STEPS[current.number]
        if current.number < len(onboarding_steps.STEPS)
        else None
    )
    return {
        "step": current,
        "steps": onboarding_steps.STEPS,
        "total": onboarding_steps.LAST,
        "next_step": following,
        **extra,
    }


def _onboarding_review(request, draft):
    """The last step: everything entered, then one call that writes it all or nothing."""
    current = onboarding_steps.STEPS[-1]
    arguments = onboarding_steps.onboarding_arguments(draft)
    errors: dict[int | None, list[str]] = {}
    if request.method == "POST" and "confirm" in request.POST:
        try:
            ministry = ministry_onboard(actor=Actor.from_request(request), **arguments)
        except ValidationError as exc:
            for field, field_errors in exc.message_dict.items():
                errors.setdefault(onboarding_steps.step_for_field(field), []).extend(field_errors)
        else:
            request.session.pop(onboarding_steps.SESSION_KEY, None)
            messages.success(
                request,
                _("Ministry “%(name)s” is onboarded, as a pilot.") % {"name": ministry.name},
            )
            return redirect("console:ministry", code=ministry.code)
    sections = [(step, errors.pop(step.number, [])) for step in onboarding_steps.STEPS if step.form]
    return render(
        request,
        "console/onboarding.html",
        _onboarding_context(
            current,
            review=arguments,
            sections=sections,
            general_errors=[m for ms in errors.values() for m in ms],
            has_errors=bool(errors) or any(e for _s, e in sections),
        ),
        status=400 if errors or any(e for _s, e in sections) else 200,
    )


def _readable_ministry_or_404(request, code):
    ministry = selectors.ministry_list(user=request.user).filter(code=code).first()
    if ministry is None:
        raise Http404("No such ministry")
    return ministry


@login_required
def ministry_detail(request, code):
    """A ministry: identity, state, onboarding checklist and progress towards its goal."""
    ministry = _readable_ministry_or_404(request, code)
    access = access_for(request.user)
    moves = []
    if access.operator:
        labels = RESUME_LABELS if ministry.state == Ministry.State.SUSPENDED else STATE_MOVE_LABELS
        moves = [
            (state, labels[state])
            for state in Ministry.State.values
            if state in STATE_MOVES.get(ministry.state, set())
        ]
    return render(
        request,
        "console/ministry.html",
        {
            "ministry": ministry,
            "checklist": ministry_checklist(ministry=ministry),
            "rollout": selectors.ministry_rollout_progress(ministry=ministry),
            "pools": ministry.licence_pools.order_by("-starts_on"),
            "pending_admins": ministry.pending_grants.filter(role="ministry_admin"),
            "moves": moves,
            "can_admin": access.can_admin(ministry.pk),
        },
    )


# What the button moving a ministry to each state says.
STATE_MOVE_LABELS = {
    "pilot": gettext_lazy("Resume as a pilot"),
    "rolling_out": gettext_lazy("Start rolling out"),
    "generalised": gettext_lazy("Mark as generalised"),
    "suspended": gettext_lazy("Suspend (blocks every login)"),
}
# A suspended ministry resumes at the rollout stage the operator picks.
RESUME_LABELS = {
    "pilot": gettext_lazy("Resume as a pilot"),
    "rolling_out": gettext_lazy("Resume as rolling out"),
    "generalised": gettext_lazy("Resume as generalised"),
}


@operator_required
@require_http_methods(["POST"])
def ministry_state(request, code):
    """Move a ministry along its rollout, or suspend or resume it (operators only)."""
    ministry = _readable_ministry_or_404(request, code)
    try:
        ministry_update(
            actor=Actor.from_request(request),
            ministry=ministry,
            state=request.POST.get("state", ""),
        )
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    else:
        ministry.refresh_from_db()
        messages.success(
            request,
            _("“%(name)s” is now: %(state)s.")
            % {"name": ministry.name, "state": ministry.get_state_display()},
        )
    return redirect("console:ministry", code=ministry.code)
