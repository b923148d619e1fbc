"""Liveness and readiness probes for load balancers and Kubernetes."""

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request):
    """The process answers; nothing else is checked (liveness)."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> str:
    if not settings.CELERY_BROKER_URL:
        return "eager (demo mode, no broker)"
    timeout = settings.READYZ_TIMEOUT_SECONDS
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
    return "ok"


@never_cache
@require_GET
def readyz(request):
    """The database and the broker answer; 503 naming the failing part otherwise."""
    checks: dict[str, str] = {}
    failing: list[str] = []
    try:
        _check_database()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        logger.warning("readyz: database unreachable: %s", type(exc).__name__)
        checks["database"] = f"unreachable ({type(exc).__name__})"
        failing.append("database")
    try:
        checks["broker"] = _check_broker()
    except Exception as exc:  # noqa: BLE001
        logger.warning("readyz: broker unreachable: %s", type(exc).__name__)
        checks["broker"] = f"unreachable ({type(exc).__name__})"
        failing.append("broker")
    status = 503 if failing else 200
    body = {"status": "unavailable" if failing else "ok", "checks": checks}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=status)
