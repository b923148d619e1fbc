"""Personal data pages: what is kept, why and for how long (public), and an agent's
download of everything held about them."""

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.models import Ministry
from audit.actor import Actor
from usage.personal_data import agent_personal_data_export


@login_required
@require_http_methods(["GET", "POST"])
def my_data(request):
    """GET: what the download holds; POST: the JSON file of the agent's data."""
    if request.method == "POST":
        data = agent_personal_data_export(actor=Actor.from_request(request), agent=request.user)
        response = HttpResponse(
            json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = 'attachment; filename="mes-donnees.json"'
        return response
    return render(request, "console/my_data.html")


def privacy(request):
    """What the service keeps, why and for how long; public."""
    own = getattr(request.user, "ministry", None) if request.user.is_authenticated else None
    return render(
        request,
        "console/privacy.html",
        {
            "own_ministry": own,
            "ministries": Ministry.objects.order_by("name").only("name", "retention_days"),
            "default_retention_days": settings.USAGE_DEFAULT_RETENTION_DAYS,
            "purge_after_days": settings.USAGE_PURGE_AFTER_DAYS,
            "session_hours": settings.SESSION_COOKIE_AGE // 3600,
        },
    )
