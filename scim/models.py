"""A ministry's directory connection: its bearer token, and the groups it syncs."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from controlplane.models import BaseModel


class DirectoryToken(BaseModel):
    """The bearer token a ministry's directory (Entra ID, Okta, an LDAP bridge) uses on
    ``/scim/v2/``. It expires (``expires_at``); one current token per ministry, and
    issuing the next one *replaces* it: the replaced token stays valid for an overlap
    (its ``expires_at`` is brought forward to the overlap's end) so that the directory
    can be reconfigured without a gap. At most two are ever usable: the current one and
    the one it replaces (``scim.tokens`` revokes any older one).

    Only a SHA-256 digest is stored; the token is shown once, when issued.
    """

    class State(models.TextChoices):
        ACTIVE = "active", _("active")
        EXPIRING = "expiring", _("expiring soon")
        OVERLAP = "overlap", _("replaced, valid until its overlap ends")
        EXPIRED = "expired", _("expired")
        REVOKED = "revoked", _("revoked")

    ministry = models.ForeignKey(
        "accounts.Ministry", on_delete=models.CASCADE, related_name="directory_tokens"
    )
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        "accounts.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField()
    replaced_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["ministry"],
                condition=Q(revoked_at__isnull=True, replaced_at__isnull=True),
                name="directory_token_one_current_per_ministry",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ministry_id}: {self.prefix}…"

    def state(self, *, now=None, warn_days: int | None = None) -> str:
        """Where the token stands now: what the console and the API show the admin."""
        now = now or timezone.now()
        if warn_days is None:
            warn_days = settings.SCIM_TOKEN_WARN_DAYS
        if self.revoked_at is not None:
            return self.State.REVOKED
        if self.expires_at <= now:
            return self.State.EXPIRED
        if self.replaced_at is not None:
            return self.State.OVERLAP
        if self.expires_at <= now + timedelta(days=warn_days):
            return self.State.EXPIRING
        return self.State.ACTIVE

    # Seen by access_for() as a token holding the ministry admin role on its ministry.
    role = "ministry_admin"


class DirectoryGroup(BaseModel):
    """A group pushed by a ministry's directory (a team, a department), kept so that
    whole teams can be invited to meetings."""

    ministry = models.ForeignKey(
        "accounts.Ministry", on_delete=models.CASCADE, related_name="directory_groups"
    )
    display_name = models.CharField(_("name"), max_length=200)
    external_id = models.CharField(_("directory identifier"), max_length=255, blank=True)
    members = models.ManyToManyField("accounts.Agent", related_name="directory_groups", blank=True)

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["ministry", "external_id"],
                condition=~Q(external_id=""),
                name="directory_group_external_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name
