"""App configuration of media_nodes."""

from django.apps import AppConfig


class MediaNodesConfig(AppConfig):
    """Media nodes (LiveKit SFUs): registry, health, placement."""

    name = "media_nodes"
    default_auto_field = "django.db.models.BigAutoField"
