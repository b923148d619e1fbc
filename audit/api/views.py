"""Read-only API of the audit trail."""

import django_filters
from rest_framework import viewsets

from audit.api.serializers import AuditEventSerializer
from audit.models import AuditEvent
from audit.selectors import audit_event_list


class AuditEventFilter(django_filters.FilterSet):
    """Filter events by ministry, action, actor, object and period."""

    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["ministry_id", "action", "actor_id", "object_type", "object_id"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Audit events visible to the caller, newest first."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    lookup_field = "sequence"

    def get_queryset(self):
        return audit_event_list(user=self.request.user)
