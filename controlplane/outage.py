"""Answers while the database is unreachable: 503 with Retry-After, never a 500.

PostgreSQL restarts (a failover of the managed service, a minor upgrade) drop every
connection for a few seconds. Requests caught in that window get a clean answer in
the caller's format: JSON for the API, a SCIM error for directories, a French page
for the console. The connections come back by themselves (``CONN_HEALTH_CHECKS``):
nothing here restarts anything.
"""

import json
import logging
import sys

from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views import defaults

from controlplane.errors import (
    DATABASE_ERRORS,
    DATABASE_RETRY_AFTER_SECONDS,
    Described,
    database_unavailable_detail,
    error_describe,
)

logger = logging.getLogger(__name__)

SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def database_unavailable_log(request, exc: BaseException) -> None:
    """One warning line per refused request: the error's class, not its traceback."""
    logger.warning(
        "database unavailable: %s %s answered 503 (%s)",
        request.method,
        request.path,
        type(exc).__name__,
    )


def error_answer(request, exc: BaseException) -> Described | None:
    """The error table's answer to ``exc`` for an edge (the API, SCIM), with a
    database outage logged once here, in one warning line; the edge marks its
    response as logged so that Django does not log it again as an error."""
    described = error_describe(exc)
    if described is not None and isinstance(exc, DATABASE_ERRORS):
        database_unavailable_log(request, exc)
    return described


def database_unavailable_response(request) -> HttpResponse:
    """A 503 in the format the caller reads, built without touching the database."""
    detail = database_unavailable_detail()
    path = request.path_info
    if path.startswith("/scim/"):
        body = {"schemas": [SCIM_ERROR_SCHEMA], "status": "503", "detail": detail}
        response = HttpResponse(json.dumps(body), status=503, content_type="application/scim+json")
    elif path.startswith(("/api/", "/hooks/")):
        response = JsonResponse({"detail": detail, "code": "service_unavailable"}, status=503)
    else:
        # No request context: the console's context processors would read the
        # database (the caller's roles) and fail again.
        page = render_to_string(
            "console/unavailable.html",
            {
                "SITE_CONFIG": {
                    "site_title": _("Visio of the State"),
                    "site_tagline": _("Sovereign videoconferencing for public servants"),
                },
                "retry_url": request.get_full_path(),
                "retry_after": DATABASE_RETRY_AFTER_SECONDS,
            },
        )
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def server_error(request):
    """``handler500``: a database outage becomes a 503; anything else stays a 500.

    Django calls this with the exception being handled, whether it came from a view
    or from a middleware (the session, the authenticated user), so this one place
    covers both.
    """
    exc = sys.exc_info()[1]
    if isinstance(exc, DATABASE_ERRORS):
        database_unavailable_log(request, exc)
        response = database_unavailable_response(request)
        # Already logged above, in one line: Django would log it again as an error
        # with its traceback, once per request for the whole outage.
        response._has_been_logged = True
        return response
    return defaults.server_error(request)
