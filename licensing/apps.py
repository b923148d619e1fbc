"""App configuration of licensing."""

from django.apps import AppConfig


class LicensingConfig(AppConfig):
    """Licence pools, seats, rollout goals and savings."""

    name = "licensing"
    default_auto_field = "django.db.models.BigAutoField"
