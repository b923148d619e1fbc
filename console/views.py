"""Console pages: login, logout, and one home page per role."""

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts import selectors
from accounts.access import access_for
from accounts.models import Agent, Ministry


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
    return render(
        request,
        "console/home.html",
        {
            "ministries": ministries,
            "state_counts": [(Ministry.State(s).label, n) for s, n in states.items()],
            "me": request.user,
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
