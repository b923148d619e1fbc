"""App configuration of rooms."""

from django.apps import AppConfig


class RoomsConfig(AppConfig):
    """Rooms, joining and allocation of live meetings (issue: media nodes and rooms)."""

    name = "rooms"
    default_auto_field = "django.db.models.BigAutoField"
