"""Reads of the audit trail, scoped to what the caller may see."""

from django.db.models import Q, QuerySet

from accounts.access import access_for
from audit.models import AuditEvent


def audit_event_list(*, user) -> QuerySet[AuditEvent]:
    """Operators and national auditors see every event; ministry admins and auditors
    see their ministries' events; anyone else sees only the events they caused."""
    access = access_for(user)
    events = AuditEvent.objects.all()
    readable = access.readable_ministries
    if readable is None:
        return events
    if access.via_token:
        return events.filter(ministry_id__in=readable)
    if not getattr(user, "is_authenticated", False):
        return events.none()
    return events.filter(Q(ministry_id__in=readable) | Q(actor_id=user.pk))
