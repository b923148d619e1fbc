"""App configuration of accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Ministries, agents, role grants, API tokens."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Models are loaded only now: these modules read them.
        from django.contrib.auth.models import update_last_login
        from django.contrib.auth.signals import user_logged_in

        from accounts import gauges
        from controlplane.metrics import state_reader_register

        # agent_login records last_login in its own transaction; Django's receiver
        # would spend one more commit per login on the same column.
        user_logged_in.disconnect(update_last_login, dispatch_uid="update_last_login")
        state_reader_register(source="database", reader=gauges.import_jobs_by_state)
