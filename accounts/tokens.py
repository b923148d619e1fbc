"""API tokens of a ministry's automation: creation, revocation, authentication.

A token's secret is shown once and stored only as a SHA-256 digest. Public to other
apps: ``token_digest`` (scim stores its directory tokens the same way).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import access_for, require_admin
from accounts.models import TOKEN_ROLE_CHOICES, ApiToken, Ministry
from audit.actor import Actor
from audit.services import audit_record

TOKEN_PREFIX = "vcp"


def token_digest(token: str) -> str:
    """The stored form of a bearer secret (its SHA-256, hex): what a lookup compares.

    Public: scim digests its directory tokens with it.
    """
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *, actor: Actor, ministry: Ministry, role: str, name: str, expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token for a ministry's automation; returns it with its only clear copy."""
    access = access_for(actor.user)
    if access.via_token:
        raise PermissionDenied(_("API tokens cannot create API tokens."))
    require_admin(actor, ministry.pk)
    if role not in dict(TOKEN_ROLE_CHOICES):
        raise ValidationError({"role": _("A token's role is ministry_admin or auditor.")})
    days = expires_in_days or settings.API_TOKEN_DEFAULT_DAYS
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise ValidationError(
            {
                "expires_in_days": _("Between 1 and %(max)d days.")
                % {"max": settings.API_TOKEN_MAX_DAYS}
            }
        )
    prefix = secrets.token_hex(4)
    clear = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        name=name,
        ministry=ministry,
        role=role,
        prefix=prefix,
        digest=token_digest(clear),
        created_by=actor.agent,
        expires_at=timezone.now() + timedelta(days=days),
    )
    token.save(force_insert=True)
    audit_record(
        actor=actor,
        action="api_token.create",
        target=token,
        ministry_id=ministry.pk,
        data={"name": name, "role": role, "prefix": prefix, "days": days},
    )
    return token, clear


@transaction.atomic
def api_token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke a token at once; it stays listed for the record."""
    access = access_for(actor.user)
    if access.via_token:
        if actor.token.pk != token.pk:
            raise PermissionDenied(_("An API token can only revoke itself."))
    else:
        require_admin(actor, token.ministry_id)
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    token.refresh_from_db()
    if updated:
        audit_record(
            actor=actor,
            action="api_token.revoke",
            target=token,
            ministry_id=token.ministry_id,
            data={"prefix": token.prefix},
        )
    return token


def api_token_authenticate(*, clear: str) -> ApiToken:
    """Find the usable token matching a presented secret, or say precisely why not."""
    parts = clear.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 8 or len(parts[2]) < 32:
        raise ValueError(_("Malformed API token."))
    token = ApiToken.objects.select_related("ministry").filter(digest=token_digest(clear)).first()
    if token is None:
        raise ValueError(_("Unknown API token."))
    if token.revoked_at is not None:
        raise ValueError(_("This API token has been revoked."))
    now = timezone.now()
    if token.expires_at <= now:
        raise ValueError(_("This API token has expired."))
    if token.ministry.state == Ministry.State.SUSPENDED:
        raise ValueError(_("This ministry is suspended."))
    # Record use at most once a minute: one conditional UPDATE, no write per request.
    ApiToken.objects.filter(pk=token.pk).exclude(
        last_used_at__gt=now - timedelta(minutes=1)
    ).update(last_used_at=now)
    return token
