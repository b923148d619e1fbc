"""App configuration of the console."""

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """Pages for operators, ministry admins, auditors and agents."""

    name = "console"
