"""Abstract base model shared by the apps: UUID key and timestamps."""

import uuid

from django.db import models


class BaseModel(models.Model):
    """UUID primary key (never guessable in URLs) and creation/update times."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True, editable=False)

    class Meta:
        abstract = True
