"""A ministry's directory connection: its bearer token, and the groups it syncs."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from controlplane.models import BaseModel


class DirectoryToken(BaseModel):
    """The bearer token a ministry's directory (Entra ID, Okta, an LDAP bridge) uses on
    ``/scim/v2/``. One live token per ministry: issuing a new one revokes the old.

    Only a SHA-256 digest is stored; the token is shown once, when issued.
    """

    ministry = models.ForeignKey(
        "accounts.Ministry", on_delete=models.CASCADE, related_name="directory_tokens"
    )
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        "accounts.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["ministry"],
                condition=Q(revoked_at__isnull=True),
                name="directory_token_one_live_per_ministry",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ministry_id}: {self.prefix}…"

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
