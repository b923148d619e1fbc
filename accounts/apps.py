"""App configuration of accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Ministries, agents, role grants, API tokens."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
