"""Licence pools: the seats a ministry holds for a period, and what they save."""

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from controlplane.models import BaseModel


class LicencePool(BaseModel):
    """Seats held by a ministry from ``starts_on`` to ``ends_on`` (inclusive).

    ``foreign_price_eur`` is the yearly price of the foreign licence one seat
    replaces; ``sovereign_cost_eur`` the yearly cost of a seat here.
    """

    ministry = models.ForeignKey(
        "accounts.Ministry", on_delete=models.CASCADE, related_name="licence_pools"
    )
    starts_on = models.DateField(_("starts on"))
    ends_on = models.DateField(_("ends on"))
    seats = models.PositiveIntegerField(_("seats"))
    foreign_price_eur = models.DecimalField(
        _("yearly price of the foreign licence replaced (EUR)"), max_digits=10, decimal_places=2
    )
    sovereign_cost_eur = models.DecimalField(
        _("yearly sovereign cost per seat (EUR)"), max_digits=10, decimal_places=2
    )

    class Meta:
        ordering = ["ministry", "-starts_on"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")), name="licence_pool_period_valid"
            ),
            models.CheckConstraint(
                condition=Q(foreign_price_eur__gte=0) & Q(sovereign_cost_eur__gte=0),
                name="licence_pool_prices_positive",
            ),
        ]
        indexes = [models.Index(fields=["ministry", "starts_on", "ends_on"])]

    def __str__(self) -> str:
        return f"{self.ministry_id}: {self.seats} seats {self.starts_on}→{self.ends_on}"
