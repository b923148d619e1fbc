"""Logs: one JSON object per line in production, a request id on every line, and no
secret or full personal data in any of them.

- ``RequestIdMiddleware`` takes a sane incoming ``X-Request-ID`` (or makes one),
  keeps it in a context variable for the request's duration and returns it in the
  response; it then writes one access line per request, without the query string
  (OIDC codes and states travel there).
- Celery carries it into tasks: ``before_task_publish`` puts it in the message
  headers, ``task_prerun`` restores it in the worker (see ``controlplane.celery``).
- ``RequestIdFilter`` adds ``request_id`` to every record; ``JsonFormatter`` and
  ``TextFormatter`` both pass the final text through ``redact``, a safety net that
  masks tokens (JWTs, bearer values, API and directory tokens, OIDC parameters,
  secrets in key=value or JSON form) and the local part of email addresses.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import time
import uuid

from django.utils.functional import SimpleLazyObject, empty

REQUEST_ID_HEADER = "X-Request-ID"
# Anything else (too long, spaces, quotes, newlines) is replaced by a fresh id.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@-]{8,128}$")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

access_logger = logging.getLogger("controlplane.access")


def request_id_get() -> str | None:
    """The request id of the work in progress (a request, or a task it queued)."""
    return _request_id.get()


def request_id_set(value: str | None) -> contextvars.Token:
    """Make ``value`` the current request id; returns the token to restore the last one."""
    return _request_id.set(value)


def request_id_reset(token: contextvars.Token) -> None:
    _request_id.reset(token)


def request_id_new(incoming: str | None = None) -> str:
    """The caller's id when it looks sane, otherwise a fresh one."""
    if incoming and _SANE_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


# -- Redaction -------------------------------------------------------------------------

_SECRET_KEYS = (
    r"access_token|id_token_hint|id_token|refresh_token|client_secret|code_verifier|"
    r"code|state|nonce|token|password|secret|api_secret|authorization|sessionid|csrftoken"
)
_REDACTIONS: list[tuple[re.Pattern, str]] = [
    # JSON Web Tokens (ID tokens, signed userinfo, LiveKit and webhook tokens).
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[jwt]"),
    # This service's API and directory tokens: the public prefix stays, for support.
    (re.compile(r"\b(vcp_[0-9a-f]{8}_)[A-Za-z0-9_-]+"), r"\1[redacted]"),
    (re.compile(r"\b(scim_[A-Za-z0-9_-]{8})[A-Za-z0-9_-]+"), r"\1[redacted]"),
    # Authorization header values.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    # key=value (query strings, form bodies, reprs) and "key": "value" (JSON).
    (
        re.compile(rf"(?i)\b({_SECRET_KEYS})=([^&\s\"',;)]+)"),
        r"\1=[redacted]",
    ),
    (
        re.compile(rf"(?i)([\"']({_SECRET_KEYS})[\"']\s*:\s*)([\"'])(?:(?!\3).)*\3"),
        r"\1\3[redacted]\3",
    ),
    # Email addresses: the first letter of the local part and the domain stay.
    (
        re.compile(r"\b([A-Za-z0-9])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"),
        r"\1***@\2",
    ),
]


def redact(text: str) -> str:
    """``text`` with tokens, secrets and email local parts masked."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# -- Filter and formatters ---------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or ``-``) to every record, for both formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # django.request logs after the middleware is done: its record has the request.
            request_id = getattr(getattr(record, "request", None), "request_id", None)
            record.request_id = request_id or _request_id.get() or "-"
        return True


# Attributes every LogRecord has; anything else was passed with ``extra=``.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "taskName"}
)


def _record_request_id(record: logging.LogRecord) -> str | None:
    value = getattr(record, "request_id", None) or _request_id.get()
    return None if value in (None, "-") else value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": _record_request_id(record),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_FIELDS or key.startswith("_"):
                continue
            if isinstance(value, str):
                entry[key] = redact(value)
            elif value is None or isinstance(value, bool | int | float):
                entry[key] = value
            # Anything else (django.request's request object, whose repr holds the query
            # string) is left out.
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines for the demo and development, redacted like the JSON ones."""

    def __init__(self, fmt=None, datefmt=None, style="%", **kwargs):
        super().__init__(
            fmt or "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
            datefmt,
            style,
            **kwargs,
        )

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return redact(super().format(record))


# -- Middleware --------------------------------------------------------------------------


def _user_id(request) -> str | None:
    """A pseudonymous id of the caller (never an email): agent pk or token prefix."""
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None  # no view looked: looking now would cost a session read
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    token = getattr(user, "api_token", None)
    if token is not None:
        return f"token:{token.prefix}"
    return str(user.pk)


class RequestIdMiddleware:
    """Gives each request an id (``X-Request-ID`` in and out) and logs one access line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_new(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        token = _request_id.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            access_logger.info(
                "%s %s %s %sms",
                request.method,
                request.path,  # never the query string: codes and states live there
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                    "user": _user_id(request),
                },
            )
            return response
        finally:
            _request_id.reset(token)
