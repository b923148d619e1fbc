"""``manage.py import_agents FILE --ministry CODE [--dry-run] [--deactivate-missing]``."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.import_csv import ImportFileError
from accounts.imports import agent_import_apply, agent_import_plan
from accounts.models import Ministry
from audit.actor import Actor
from licensing.services import NoFreeSeat


class Command(BaseCommand):
    help = "Import a ministry's agents from a CSV export (preview with --dry-run)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--ministry", required=True, help="the ministry's code")
        parser.add_argument("--dry-run", action="store_true", help="say what would change")
        parser.add_argument(
            "--deactivate-missing",
            action="store_true",
            help="deactivate the ministry's agents absent from the file",
        )
        parser.add_argument(
            "--delimiter", choices=[",", ";"], default=None, help="override the detected separator"
        )
        parser.add_argument("--errors", type=Path, help="write the rows in error to this CSV")

    def handle(self, *args, **options):
        ministry = Ministry.objects.filter(code=options["ministry"]).first()
        if ministry is None:
            raise CommandError(f"Unknown ministry “{options['ministry']}”.")
        try:
            raw = options["file"].read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc.strerror}") from exc
        self._bar("reading", 0, 1)
        try:
            plan = agent_import_plan(
                ministry=ministry,
                raw=raw,
                delimiter=options["delimiter"],
                deactivate_missing=options["deactivate_missing"],
            )
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        self._bar("reading", 1, 1)
        counts = plan.counts
        self.stdout.write("  ".join(f"{k}: {v}" for k, v in counts.items()))
        for row in plan.rows:
            if row.action == "error":
                self.stdout.write(f"  line {row.line} [{row.column or '-'}]: {row.reason}")
        if options["errors"] and counts["error"]:
            options["errors"].write_text(plan.errors_csv(), encoding="utf-8-sig")
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing written.")
            return
        total = counts["create"] + counts["update"] + counts["deactivate"]
        done = 0

        def progress(n):
            nonlocal done
            done += n
            self._bar("writing", done, total)

        try:
            agent_import_apply(
                actor=Actor.system("manage.py import_agents"), plan=plan, progress=progress
            )
        except NoFreeSeat as exc:
            raise CommandError(f"{exc} Nothing was written.") from exc
        self.stdout.write(self.style.SUCCESS(f"Applied to {ministry.name}."))

    def _bar(self, label, done, total, width=30):
        filled = width if not total else int(width * done / total)
        sys.stderr.write(f"\r{label:8} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
