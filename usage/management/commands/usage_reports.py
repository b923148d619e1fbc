"""``manage.py usage_reports --month 2026-10 [--force]``: make a month's reports now."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from audit.actor import Actor
from usage.reports import monthly_reports_generate, previous_month


class Command(BaseCommand):
    help = "Make the national and every ministry's usage report for a month."

    def add_arguments(self, parser):
        parser.add_argument("--month", help="YYYY-MM (default: the month before today)")
        parser.add_argument(
            "--force", action="store_true", help="Replace reports already made for that month."
        )

    def handle(self, *args, month=None, force=False, **options):
        try:
            first_day = date.fromisoformat(f"{month}-01") if month else previous_month()
        except ValueError as exc:
            raise CommandError(f"--month {month!r}: expected YYYY-MM") from exc
        made = monthly_reports_generate(
            actor=Actor.system("manage.py usage_reports"), month=first_day, force=force
        )
        for report in made:
            self.stdout.write(f"{report.filename}  sha256 {report.sha256}")
        self.stdout.write(
            self.style.SUCCESS(f"{first_day:%Y-%m}: {len(made)} report(s) made")
            if made
            else f"{first_day:%Y-%m}: every report already exists (use --force to replace)"
        )
