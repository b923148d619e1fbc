"""What an authenticated caller may see and do, computed once per request.

Every selector and service asks ``access_for(user)``: the caller's grants (or
API token) become sets of ministry ids. A caller with nothing granted sees
only themselves, so a forgotten rule fails closed.

Public to other apps: ``access_for``, ``require_operator`` and ``require_admin``
(audit, licensing, rooms, media_nodes, scim, usage and the console check their
callers with them). This module sits at the bottom of the layers with
``accounts.models``: it imports nothing from audit, licensing or any app above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _

from accounts.models import Role, RoleGrant


@dataclass(frozen=True)
class Access:
    """The scope of one caller."""

    operator: bool = False
    national_auditor: bool = False
    admin_of: frozenset[UUID] = field(default_factory=frozenset)
    auditor_of: frozenset[UUID] = field(default_factory=frozenset)
    own_ministry: UUID | None = None
    # An API token acts only through its grant, never as a person.
    via_token: bool = False

    @property
    def reads_all(self) -> bool:
        return self.operator or self.national_auditor

    @property
    def readable_ministries(self) -> frozenset[UUID] | None:
        """Ministries whose data this caller may read; None means all of them."""
        if self.reads_all:
            return None
        return self.admin_of | self.auditor_of

    def can_read(self, ministry_id: UUID | None) -> bool:
        readable = self.readable_ministries
        return readable is None or (ministry_id is not None and ministry_id in readable)

    def can_admin(self, ministry_id: UUID | None) -> bool:
        return self.operator or (ministry_id is not None and ministry_id in self.admin_of)

    @property
    def is_staff_role(self) -> bool:
        """Holds any role beyond being an agent (drives the console's home page)."""
        return self.operator or self.national_auditor or bool(self.admin_of or self.auditor_of)


NO_ACCESS = Access()


def access_for(user) -> Access:
    """Return (and cache on the user object) the scope of an authenticated caller."""
    if user is None or not getattr(user, "is_authenticated", False):
        return NO_ACCESS
    cached = getattr(user, "_access_cache", None)
    if cached is not None:
        return cached
    token = getattr(user, "api_token", None)
    if token is not None:
        access = Access(
            admin_of=frozenset({token.ministry_id})
            if token.role == Role.MINISTRY_ADMIN
            else frozenset(),
            auditor_of=frozenset({token.ministry_id})
            if token.role == Role.AUDITOR
            else frozenset(),
            via_token=True,
        )
    elif not user.is_active:
        access = NO_ACCESS
    else:
        operator = national_auditor = False
        admin_of: set[UUID] = set()
        auditor_of: set[UUID] = set()
        # Grants on a suspended ministry are dormant: its admins and auditors lose
        # their rights there at once, open sessions included.
        grants = RoleGrant.objects.filter(agent=user).exclude(ministry__state="suspended")
        for role, ministry_id in grants.values_list("role", "ministry_id"):
            if role == Role.OPERATOR:
                operator = True
            elif role == Role.MINISTRY_ADMIN:
                admin_of.add(ministry_id)
            elif ministry_id is None:
                national_auditor = True
            else:
                auditor_of.add(ministry_id)
        access = Access(
            operator=operator,
            national_auditor=national_auditor,
            admin_of=frozenset(admin_of),
            auditor_of=frozenset(auditor_of),
            own_ministry=user.ministry_id,
        )
    user._access_cache = access
    return access


class Acting(Protocol):
    """What the guards read of a write's caller (``audit.actor.Actor`` has it; this
    base module names the shape rather than import the audit app above it)."""

    user: Any
    is_system: bool


def require_operator(actor: Acting) -> None:
    """Refuse anyone but a platform operator (or the system itself).

    Public: other apps' services (media_nodes, scim) call this guard.
    """
    if actor.is_system:
        return
    if not access_for(actor.user).operator:
        raise PermissionDenied(_("Only platform operators may do this."))


def require_admin(actor: Acting, ministry_id: UUID | None) -> None:
    """Refuse anyone but an admin of ``ministry_id``, an operator, or the system.

    Public: other apps' services (scim) call this guard.
    """
    if actor.is_system:
        return
    access = access_for(actor.user)
    if not access.can_admin(ministry_id):
        raise PermissionDenied(_("Only this ministry's admins or an operator may do this."))
