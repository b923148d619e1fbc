"""``manage.py usage_rollup [--from DATE --to DATE]``: roll up usage, one day at a time
for a range (with progress), or incrementally (the days changed since the last run)."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from usage.rollup import rollup_days, rollup_earliest_day, rollup_incremental


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"“{value}” is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = (
        "Recompute daily usage for --from..--to (inclusive, local days), or, without "
        "dates, the days touched by sessions changed since the last run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="first", type=_date, help="First day, YYYY-MM-DD.")
        parser.add_argument("--to", dest="last", type=_date, help="Last day, YYYY-MM-DD.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Also rebuild days older than retention allows (their sessions may be gone).",
        )

    def handle(self, *args, first=None, last=None, force=False, **options):
        if first is None and last is None:
            written = rollup_incremental()
            self.stdout.write(self.style.SUCCESS(f"Incremental roll-up: {written} rows."))
            return
        if first is None or last is None:
            raise CommandError("Give both --from and --to, or neither.")
        if last < first:
            raise CommandError("--to is before --from.")
        earliest = rollup_earliest_day()
        if first < earliest and not force:
            self.stdout.write(
                self.style.WARNING(
                    f"Days before {earliest} are kept as they are (retention may have "
                    "deleted their sessions); --force rebuilds them."
                )
            )
        total_days = (last - first).days + 1
        done = 0

        def progress(day: date, rows: int) -> None:
            nonlocal done
            done += 1
            self.stdout.write(f"[{done}/{total_days}] {day.isoformat()}: {rows} rows")

        written = rollup_days(first, last, progress=progress, force=force)
        self.stdout.write(self.style.SUCCESS(f"Rolled up {written} rows."))
