"""``manage.py operator_bootstrap EMAIL``: name a platform operator from the shell."""

from django.core.management.base import BaseCommand

from accounts.grants import operator_bootstrap
from audit.actor import Actor


class Command(BaseCommand):
    help = "Grant the platform operator role to EMAIL (created if unknown); audited."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--given-name", default="")
        parser.add_argument("--usual-name", default="")

    def handle(self, *args, email, given_name, usual_name, **options):
        grant = operator_bootstrap(
            actor=Actor.system("manage.py operator_bootstrap"),
            email=email,
            given_name=given_name,
            usual_name=usual_name,
        )
        self.stdout.write(self.style.SUCCESS(f"{grant.agent.email} is a platform operator."))
