"""Issue a ministry's directory (SCIM) token from the shell: ``manage.py scim_token CODE``."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Ministry
from audit.actor import Actor
from scim.tokens import directory_token_issue


class Command(BaseCommand):
    help = (
        "Issue the directory token of a ministry (the previous one stays valid for the "
        "overlap) and print it once, with the SCIM URL to configure in Entra ID, Okta or "
        "an LDAP bridge."
    )

    def add_arguments(self, parser):
        parser.add_argument("ministry", help="the ministry's code")
        parser.add_argument(
            "--base-url", default="https://visio.numerique.gouv.fr", help="public URL"
        )
        parser.add_argument("--days", type=int, help="lifetime (default SCIM_TOKEN_LIFETIME_DAYS)")
        parser.add_argument(
            "--overlap-days",
            type=int,
            help="how long the previous token stays valid (default SCIM_TOKEN_OVERLAP_DAYS; 0: "
            "revoked at once)",
        )

    def handle(self, *args, ministry, base_url, days, overlap_days, **options):
        try:
            target = Ministry.objects.get(code=ministry)
        except Ministry.DoesNotExist as exc:
            raise CommandError(f"No ministry with code “{ministry}”.") from exc
        try:
            token, clear = directory_token_issue(
                actor=Actor.system("manage.py scim_token"),
                ministry=target,
                expires_in_days=days,
                overlap_days=overlap_days,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"SCIM URL: {base_url.rstrip('/')}/scim/v2/")
        self.stdout.write(f"Token (shown once): {clear}")
        self.stderr.write(
            f"Issued {token.prefix}… for {target.code}, valid until "
            f"{token.expires_at:%Y-%m-%d %H:%M %Z}; the previous one, if any, is replaced."
        )
