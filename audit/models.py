"""Audit events, chained by SHA-256 so that any change or removal is detectable.

The database itself refuses UPDATE and DELETE on events (triggers installed by
migration 0002); the head row records the last link so that a removed tail is
detected too.
"""

from django.db import models


class AuditEvent(models.Model):
    """Who did what, to which object, when and from where; never changed once written."""

    sequence = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor_id = models.UUIDField(null=True, blank=True, db_index=True)
    actor_label = models.CharField(max_length=254)
    token_id = models.UUIDField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=254, blank=True)
    ministry_id = models.UUIDField(null=True, blank=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-sequence"]
        indexes = [models.Index(fields=["ministry_id", "-sequence"])]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} by {self.actor_label}"


class AuditChainHead(models.Model):
    """The single row holding the chain's last link; locked by each writer in turn."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_head_single")]

    def __str__(self) -> str:
        return f"audit head #{self.sequence}"
