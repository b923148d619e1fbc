from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ScimConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "scim"
    verbose_name = _("Directory sync (SCIM 2.0)")

    def ready(self):
        # Models are loaded only now: the gauge reads them.
        from controlplane.metrics import state_reader_register
        from scim import gauges

        state_reader_register(source="database", reader=gauges.directory_token_expiry)
