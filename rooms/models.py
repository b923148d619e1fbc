"""Rooms: the meetings agents create, share and join."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from controlplane.models import BaseModel


class Room(BaseModel):
    """A meeting room, reachable at a readable slug such as ``abc-defg-hij``."""

    class Access(models.TextChoices):
        PUBLIC = "public", _("Anyone with the link")
        MINISTRY = "ministry", _("Agents of the ministry")
        INVITED = "invited", _("Invited agents only")

    slug = models.SlugField(_("address"), max_length=16, unique=True)
    name = models.CharField(_("name"), max_length=200)
    owner = models.ForeignKey(
        "accounts.Agent", on_delete=models.PROTECT, related_name="owned_rooms"
    )
    ministry = models.ForeignKey(
        "accounts.Ministry", on_delete=models.PROTECT, related_name="rooms"
    )
    access = models.CharField(_("access"), max_length=8, choices=Access, default=Access.MINISTRY)
    expected_size = models.PositiveIntegerField(_("expected participants"), default=10)
    invitees = models.ManyToManyField("accounts.Agent", related_name="invited_rooms", blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(access__in=["public", "ministry", "invited"]), name="room_access_valid"
            ),
            models.CheckConstraint(
                condition=Q(expected_size__gte=2) & Q(expected_size__lte=1000),
                name="room_expected_size_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"
