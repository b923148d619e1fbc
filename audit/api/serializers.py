"""Serializers of audit events (read-only)."""

from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    """An audit event as auditors read it."""

    class Meta:
        model = AuditEvent
        fields = [
            "sequence",
            "created_at",
            "actor_id",
            "actor_label",
            "token_id",
            "ip",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "ministry_id",
            "data",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields
