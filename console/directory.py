"""Console page of a ministry's directory connection (SCIM): the URL to configure in
Entra ID or Okta, the directory tokens with their state, and issuing or revoking one.

Only the ministry's admins (and operators) reach it: an auditor or another
ministry's admin gets 403, whether the ministry exists or not. A new token's secret
is shown in the answer to the POST that issued it, once, and never stored or
redirected through the session. So that reloading that answer (the browser sends
the POST again) cannot issue a second token and put the first one into overlap,
the issue form carries a one-time value kept in the session.
"""

import secrets
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts import selectors
from audit.actor import Actor
from scim.tokens import directory_token_issue, directory_token_list, directory_token_revoke


def _days(raw: str, field: str) -> int | None:
    """A day count typed in the form (blank: the default); refused with the field."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ValidationError({field: _("Enter a whole number of days.")}) from exc


ISSUE_ONCE = "console_directory_issue_once"


def _issue_once(request) -> None:
    """Spend the issue form's one-time value; a form sent again is refused."""
    expected = request.session.pop(ISSUE_ONCE, None)
    if not expected or not constant_time_compare(request.POST.get("once", ""), expected):
        raise ValidationError(
            _(
                "This form was already sent (the page was reloaded?): no new token was "
                "issued. Use the form below to issue one."
            )
        )


def _token_or_none(tokens, raw: str):
    try:
        return tokens.filter(pk=UUID(raw)).first()
    except ValueError:
        return None


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def directory(request, code):
    """Show the ministry's directory connection; POST ``action=issue`` or ``revoke``."""
    ministry = selectors.ministry_administrable(user=request.user).filter(code=code).first()
    if ministry is None:
        raise PermissionDenied(_("Only this ministry's admins or an operator may do this."))
    tokens = directory_token_list(user=request.user).filter(ministry=ministry)
    issued = clear = None
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        actor = Actor.from_request(request)
        form = request.POST
        action = form.get("action")
        try:
            if action == "issue":
                _issue_once(request)
                issued, clear = directory_token_issue(
                    actor=actor,
                    ministry=ministry,
                    expires_in_days=_days(form.get("expires_in_days", ""), "expires_in_days"),
                    overlap_days=_days(form.get("overlap_days", ""), "overlap_days"),
                )
            elif action == "revoke":
                token = _token_or_none(tokens, form.get("token", ""))
                if token is None:
                    raise ValidationError(_("This token does not belong to the ministry."))
                directory_token_revoke(actor=actor, token=token)
                messages.success(
                    request,
                    _(
                        "Token %(prefix)s… is revoked: the directory using it is refused "
                        "from now on."
                    )
                    % {"prefix": token.prefix},
                )
                return redirect("console:directory", code=ministry.code)
            else:
                raise ValidationError(_("Unknown action."))
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
    request.session[ISSUE_ONCE] = once = secrets.token_urlsafe(16)
    return render(
        request,
        "console/directory.html",
        {
            "ministry": ministry,
            "scim_url": request.build_absolute_uri("/scim/v2/"),
            "tokens": tokens,
            "issued": issued,
            "clear": clear,
            "errors": errors,
            "once": once,
            "lifetime_days": settings.SCIM_TOKEN_LIFETIME_DAYS,
            "overlap_days": settings.SCIM_TOKEN_OVERLAP_DAYS,
            "max_overlap_days": settings.SCIM_TOKEN_MAX_OVERLAP_DAYS,
            "warn_days": settings.SCIM_TOKEN_WARN_DAYS,
        },
        status=400 if errors else 200,
    )
