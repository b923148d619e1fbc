"""App configuration of the project package itself."""

from django.apps import AppConfig


class ControlplaneConfig(AppConfig):
    """Settings, URLs, the Celery application and what every app stands on."""

    name = "controlplane"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Workers' and beat's liveness files (their receivers are Celery signals).
        from controlplane import heartbeat

        heartbeat.heartbeat_signals_connect()
