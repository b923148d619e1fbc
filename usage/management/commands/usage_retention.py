"""``manage.py usage_retention [--dry-run]``: apply the retention of participant
sessions, or say per ministry what it would pseudonymise and delete."""

from django.core.management.base import BaseCommand

from audit.actor import Actor
from usage.retention import usage_retention_apply


class Command(BaseCommand):
    help = (
        "Pseudonymise participant sessions past their ministry's retention and delete "
        "them USAGE_PURGE_AFTER_DAYS later; --dry-run only counts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count, change nothing.")

    def handle(self, *args, dry_run=False, **options):
        results = usage_retention_apply(
            actor=Actor.system("manage.py usage_retention"), dry_run=dry_run
        )
        verb = "would be" if dry_run else "were"
        for r in results:
            name = r.ministry.code if r.ministry else "(no ministry)"
            self.stdout.write(
                f"{name} (retention {r.retention_days} days): {r.pseudonymised} sessions "
                f"{verb} pseudonymised, {r.deleted} {verb} deleted, "
                f"{r.meetings_deleted} meetings {verb} deleted"
            )
        if dry_run:
            self.stdout.write(self.style.WARNING("Dry run: nothing was changed."))
