"""App configuration of audit."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    """Append-only, hash-chained audit events."""

    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"
