"""Console pages of usage exports and monthly reports, for auditors, ministry admins
and operators."""

import base64
import binascii
from datetime import timedelta
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from audit.actor import Actor
from audit.services import audit_record
from usage import selectors
from usage.exports import export_allowed, export_http_response, usage_export_open
from usage.forms import ExportForm


def exporter_required(view):
    """Auditors, ministry admins and operators; anonymous callers go to the login page."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not export_allowed(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


@exporter_required
@require_http_methods(["GET", "POST"])
def exports(request):
    """The export form; a valid submission downloads the file (streamed)."""
    ministries = selectors.export_ministry_list(user=request.user).order_by("name")
    if request.method == "POST":
        form = ExportForm(request.POST)
        if form.is_valid():
            ministry = None
            if code := form.cleaned_data.get("ministry"):
                ministry = ministries.filter(code=code).first()
                if ministry is None:
                    raise Http404("No such ministry")
            export = usage_export_open(
                actor=Actor.from_request(request),
                user=request.user,
                request=form.export_request(ministry=ministry),
            )
            return export_http_response(export)
        status = 400
    else:
        today = timezone.localdate()
        form = ExportForm(
            initial={
                "from": today.replace(day=1) if today.day > 1 else today - timedelta(days=30),
                "to": today,
                **ExportForm.DEFAULTS,
            }
        )
        status = 200
    return render(
        request,
        "console/exports.html",
        {
            "form": form,
            "choice_fields": [form[n] for n in ("dataset", "format", "granularity", "delimiter")],
            "ministries": ministries,
            "selected": form["ministry"].value() or "",
        },
        status=status,
    )


@exporter_required
def reports(request):
    """Monthly reports the caller may read, newest first, with their SHA-256."""
    reports = selectors.monthly_report_list(user=request.user).order_by("-month", "ministry__name")[
        :500
    ]
    return render(request, "console/reports.html", {"reports": reports})


@exporter_required
def report_download(request, pk):
    """The stored bytes of a report, with their SHA-256 in ``Repr-Digest`` (RFC 9530)
    and ``X-Checksum-SHA256``; downloading one is in the audit trail."""
    report = selectors.monthly_report_list(user=request.user).defer(None).filter(pk=pk).first()
    if report is None:
        raise Http404("No such report")
    content = bytes(report.content)
    with transaction.atomic():
        audit_record(
            actor=Actor.from_request(request),
            action="usage.report_download",
            target=report,
            ministry_id=report.ministry_id,
            data={"month": f"{report.month:%Y-%m}", "sha256": report.sha256},
        )
    response = HttpResponse(content, content_type=report.content_type)
    response["Content-Disposition"] = f'attachment; filename="{report.filename}"'
    response["X-Checksum-SHA256"] = report.sha256
    try:
        digest = base64.b64encode(binascii.unhexlify(report.sha256)).decode()
        response["Repr-Digest"] = f"sha-256=:{digest}:"
    except (binascii.Error, ValueError):
        pass
    response["Cache-Control"] = "no-store"
    return response
