"""Issue a ministry's directory (SCIM) token from the shell: ``manage.py scim_token CODE``."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Ministry
from audit.actor import Actor
from scim.services import directory_token_issue


class Command(BaseCommand):
    help = (
        "Issue the directory token of a ministry (revoking its previous one) and print it "
        "once, with the SCIM URL to configure in Entra ID, Okta or an LDAP bridge."
    )

    def add_arguments(self, parser):
        parser.add_argument("ministry", help="the ministry's code")
        parser.add_argument(
            "--base-url", default="https://visio.numerique.gouv.fr", help="public URL"
        )

    def handle(self, *args, ministry, base_url, **options):
        try:
            target = Ministry.objects.get(code=ministry)
        except Ministry.DoesNotExist as exc:
            raise CommandError(f"No ministry with code “{ministry}”.") from exc
        token, clear = directory_token_issue(
            actor=Actor.system("manage.py scim_token"), ministry=target
        )
        self.stdout.write(f"SCIM URL: {base_url.rstrip('/')}/scim/v2/")
        self.stdout.write(f"Token (shown once): {clear}")
        self.stderr.write(f"Issued {token.prefix}… for {target.code}; the previous one is revoked.")
