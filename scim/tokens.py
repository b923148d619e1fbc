"""Directory (SCIM) tokens: issue with a lifetime, rotate with an overlap, revoke,
authenticate.

A ministry has one *current* token. Issuing the next one replaces it: the replaced
token stays valid for an overlap (``SCIM_TOKEN_OVERLAP_DAYS`` unless the admin picks
0 to SCIM_TOKEN_MAX_OVERLAP_DAYS; 0 stops it at once), long enough to paste the new
secret into Entra ID or Okta without a gap in the sync. A token replaced while its
own predecessor is still in its overlap revokes that predecessor, so no more than two
tokens of a ministry are ever usable. Every token expires (``SCIM_TOKEN_LIFETIME_DAYS``
at most); the console and the ``visio_directory_tokens`` gauges show
what is about to.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import access_for, require_admin
from accounts.models import Ministry
from accounts.tokens import token_digest
from audit.actor import Actor
from audit.services import audit_record
from scim.models import DirectoryToken

TOKEN_PREFIX = "scim"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _days(value, *, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(
            {field: _("Between %(low)d and %(high)d days.") % {"low": low, "high": high}}
        )
    return value


def directory_token_list(*, user) -> QuerySet[DirectoryToken]:
    """The directory tokens of the ministries ``user`` reads (auditors included: they
    see the metadata, never a secret), newest first."""
    readable = access_for(user).readable_ministries
    tokens = DirectoryToken.objects.select_related("ministry", "created_by")
    if readable is None:
        return tokens
    return tokens.filter(ministry_id__in=readable)


@transaction.atomic
def directory_token_issue(
    *,
    actor: Actor,
    ministry: Ministry,
    expires_in_days: int | None = None,
    overlap_days: int | None = None,
) -> tuple[DirectoryToken, str]:
    """Issue the ministry's directory token; the current one, if any, is replaced and
    stays valid for ``overlap_days``. Returns the row and the clear token, which is
    shown once and never stored."""
    require_admin(actor, ministry.pk)
    if actor.token is not None:
        raise PermissionDenied(_("Tokens cannot issue directory tokens."))
    days = _days(
        settings.SCIM_TOKEN_LIFETIME_DAYS if expires_in_days is None else expires_in_days,
        field="expires_in_days",
        low=1,
        high=settings.SCIM_TOKEN_LIFETIME_DAYS,
    )
    overlap = _days(
        settings.SCIM_TOKEN_OVERLAP_DAYS if overlap_days is None else overlap_days,
        field="overlap_days",
        low=0,
        high=settings.SCIM_TOKEN_MAX_OVERLAP_DAYS,
    )
    # Two admins rotating at once must not leave two current tokens (the constraint
    # would refuse the second with an IntegrityError): the ministry's row orders them.
    Ministry.objects.select_for_update().filter(pk=ministry.pk).first()
    now = timezone.now()
    usable = DirectoryToken.objects.select_for_update().filter(
        Q(replaced_at__isnull=True) | Q(expires_at__gt=now),
        ministry=ministry,
        revoked_at__isnull=True,
    )
    for old in usable.order_by("created_at"):
        if old.replaced_at is not None or overlap == 0:
            # Its own overlap is cut short: never more than two usable tokens.
            reason = "replaced" if old.replaced_at is None else "replaced again"
            old.replaced_at = old.replaced_at or now
            old.revoked_at = now
            old.save(update_fields=["replaced_at", "revoked_at", "updated_at"])
            audit_record(
                actor=actor,
                action="directory_token.revoke",
                target=old,
                ministry_id=ministry.pk,
                data={"prefix": old.prefix, "reason": reason},
            )
            continue
        old.replaced_at = now
        old.expires_at = min(old.expires_at, now + timedelta(days=overlap))
        old.save(update_fields=["replaced_at", "expires_at", "updated_at"])
        audit_record(
            actor=actor,
            action="directory_token.replace",
            target=old,
            ministry_id=ministry.pk,
            data={"prefix": old.prefix, "valid_until": old.expires_at.isoformat()},
        )
    body = secrets.token_urlsafe(32)
    clear = f"{TOKEN_PREFIX}_{body}"
    token = DirectoryToken.objects.create(
        ministry=ministry,
        prefix=clear[: len(TOKEN_PREFIX) + 9],
        digest=token_digest(clear),
        created_by=actor.agent,
        expires_at=now + timedelta(days=days),
    )
    audit_record(
        actor=actor,
        action="directory_token.issue",
        target=token,
        ministry_id=ministry.pk,
        data={"prefix": token.prefix, "days": days, "overlap_days": overlap},
    )
    return token, clear


@transaction.atomic
def directory_token_revoke(*, actor: Actor, token: DirectoryToken) -> DirectoryToken:
    """Stop a directory's access at once (its sync stops until a new token is issued)."""
    require_admin(actor, token.ministry_id)
    token = DirectoryToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            actor=actor,
            action="directory_token.revoke",
            target=token,
            ministry_id=token.ministry_id,
            data={"prefix": token.prefix},
        )
    return token


def directory_token_authenticate(clear: str) -> DirectoryToken:
    """The usable token behind ``clear``. ValueError (401) says why it is not: unknown,
    revoked, expired, or replaced and past its overlap; PermissionDenied (403) when its
    ministry is suspended. No message repeats any part of the secret."""
    if not clear.startswith(f"{TOKEN_PREFIX}_") or len(clear) > 128:
        raise ValueError(_("Unknown directory token."))
    token = (
        DirectoryToken.objects.select_related("ministry").filter(digest=token_digest(clear)).first()
    )
    if token is None:
        raise ValueError(_("Unknown directory token."))
    if token.revoked_at is not None:
        raise ValueError(_("This directory token has been revoked."))
    now = timezone.now()
    if token.expires_at <= now:
        if token.replaced_at is not None:
            raise ValueError(
                _(
                    "This directory token was replaced by a newer one; its overlap ended "
                    "on %(date)s. Configure the directory with the new token."
                )
                % {"date": _utc(token.expires_at)}
            )
        raise ValueError(
            _(
                "This directory token expired on %(date)s. A ministry admin issues a new "
                "one in the console (Directory sync)."
            )
            % {"date": _utc(token.expires_at)}
        )
    if token.ministry.state == Ministry.State.SUSPENDED:
        raise PermissionDenied(_("This ministry is suspended: its directory sync is stopped."))
    # Record use at most once a minute: no statement at all while the recorded use is
    # recent, and a conditional UPDATE (one writer wins) when it is not.
    if token.last_used_at is None or token.last_used_at <= now - timedelta(minutes=1):
        DirectoryToken.objects.filter(pk=token.pk).exclude(
            last_used_at__gt=now - timedelta(minutes=1)
        ).update(last_used_at=now)
    return token
