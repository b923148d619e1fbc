"""Console pages: login, logout, and one home page per role."""

import csv
import io

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from accounts import selectors, services
from accounts.access import access_for
from accounts.models import Agent, AgentImportJob, Ministry
from audit.actor import Actor


@login_required
def home(request):
    """The caller's home: the fleet for operators, their ministries for admins and
    auditors, their own profile for every agent."""
    access = access_for(request.user)
    ministries = (
        selectors.ministry_list(user=request.user)
        .annotate(
            active_agents=Count("agents", filter=Q(agents__is_active=True)),
            total_agents=Count("agents"),
        )
        .order_by("name")
    )
    if not access.is_staff_role:
        ministries = ministries.none()
    states = dict.fromkeys(Ministry.State.values, 0)
    for ministry in ministries:
        states[ministry.state] += 1
    checklists = [
        (m, selectors.ministry_checklist(ministry=m))
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
            job = services.agent_import_job_create(
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
        applied = services.agent_import_job_create(
            actor=Actor.from_request(request),
            ministry=job.ministry,
            content=bytes(AgentImportJob.objects.get(pk=job.pk).content),
            filename=job.filename,
            deactivate_missing=job.deactivate_missing,
            apply=True,
        )
        return redirect("console:import", pk=applied.pk)
    full = AgentImportJob.objects.only("errors_csv").get(pk=job.pk)
    error_rows = list(csv.reader(io.StringIO(full.errors_csv)))[1:51]
    return render(
        request,
        "console/import_detail.html",
        {
            "job": job,
            "error_rows": error_rows,
            "running": job.state in ("pending", "running"),
            "can_apply": not job.apply
            and job.state == "done"
            and access_for(request.user).can_admin(job.ministry_id),
        },
    )
