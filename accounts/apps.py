"""App configuration of accounts."""

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


class AccountsConfig(AppConfig):
    """Ministries, agents, role grants, API tokens."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Models are loaded only now: these modules read them.
        from accounts import gauges
        from controlplane.metrics import state_reader_register

        # agent_login records last_login in its own transaction; Django's receiver
        # would spend one more commit per login on the same column. It is found by
        # its dispatch_uid, so auth's models need not be imported here.
        user_logged_in.disconnect(dispatch_uid="update_last_login")
        state_reader_register(source="database", reader=gauges.import_jobs_by_state)
