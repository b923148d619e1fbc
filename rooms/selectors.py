"""Rooms a caller may see."""

from django.db.models import Q, QuerySet

from accounts.access import access_for
from rooms.models import Room


def room_list(*, user) -> QuerySet[Room]:
    """An agent sees the rooms they own or are invited to, and their ministry's rooms
    open to its agents; admins and auditors see their ministries' rooms."""
    access = access_for(user)
    rooms = Room.objects.filter(deleted_at__isnull=True).select_related("owner", "ministry")
    if access.reads_all:
        return rooms
    if access.via_token:
        return rooms.filter(ministry_id__in=access.readable_ministries)
    scope = Q(owner=user) | Q(invitees=user)
    if user.ministry_id:
        scope |= Q(
            ministry_id=user.ministry_id, access__in=[Room.Access.MINISTRY, Room.Access.PUBLIC]
        )
    readable = access.readable_ministries
    if readable:
        scope |= Q(ministry_id__in=readable)
    return rooms.filter(scope).distinct()
