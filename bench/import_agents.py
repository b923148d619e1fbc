"""Benchmark: importing 100,000 agents into PostgreSQL, three ways, in one run.

1. this service's import (``agent_import_plan`` then ``agent_import_apply``: per-row
   checks, seats, one transaction), from a French, semicolon-separated export;
2. django-import-export 4 in bulk mode (``use_bulk=True``), same rows, same table;
3. PostgreSQL ``COPY`` of the same rows: the ceiling.

Each runs in its own process on an emptied table, so peak memory (max RSS, which
includes Django itself) is its own. Prints rows per second, peak memory and the
ratios.

    .venv/bin/python bench/import_agents.py --rows 100000
"""

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from postgres_server import database_url

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bench.gouv.fr"
SIREN = "110044013"


def env_for(db_name: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("BENCH_SECRET", secrets.token_urlsafe(60)),
        "DATABASE_URL": database_url(db_name),
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
        "AGENT_IMPORT_MAX_BYTES": str(1 << 30),
        "LOG_LEVEL": "WARNING",
    }


def rows(n: int):
    for i in range(n):
        yield (f"agent{i:06d}@{DOMAIN}", "Agent", f"Numéro {i}", f"M{i:06d}", f"Direction {i % 40}")


def write_files(tmp: Path, n: int) -> tuple[Path, Path]:
    ours = tmp / "export-fr.csv"
    with ours.open("w", encoding="utf-8-sig", newline="") as f:
        f.write("Courriel;Prénom;Nom;Matricule;Unité\r\n")
        for r in rows(n):
            f.write(";".join(r) + "\r\n")
    theirs = tmp / "export-ie.csv"
    with theirs.open("w", encoding="utf-8", newline="") as f:
        f.write("email,given_name,usual_name,external_id,organizational_unit\r\n")
        for r in rows(n):
            f.write(",".join(r) + "\r\n")
    return ours, theirs


def prepare(db_name: str, seats: int) -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{db_name}"')
    run = {"cwd": ROOT, "env": env_for(db_name), "check": True, "capture_output": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], **run)
    code = (
        "from datetime import date\n"
        "from accounts.models import Ministry, MinistryDomain\n"
        "from licensing.models import LicencePool\n"
        f"m = Ministry.objects.create(code='bench', name='Banc', siren='{SIREN}')\n"
        f"MinistryDomain.objects.create(ministry=m, domain='{DOMAIN}')\n"
        f"LicencePool.objects.create(ministry=m, starts_on=date(2020,1,1),"
        f" ends_on=date(2099,1,1), seats={seats}, foreign_price_eur=10,"
        " sovereign_cost_eur=1)\n"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], **run)


def empty_table(db_name: str) -> None:
    with psycopg.connect(database_url(db_name)) as c:
        c.execute("DELETE FROM accounts_agent")


def child(method: str, path: Path) -> None:
    """Run one import in this (fresh) process; print seconds and peak memory as JSON."""
    import django

    django.setup()
    from accounts.models import Agent, Ministry

    ministry = Ministry.objects.get(code="bench")
    started = time.perf_counter()
    if method == "ours":
        from accounts.imports import agent_import_apply, agent_import_plan
        from audit.actor import Actor

        plan = agent_import_plan(ministry=ministry, raw=path.read_bytes())
        assert plan.counts["error"] == 0, plan.counts
        agent_import_apply(actor=Actor.system("bench"), plan=plan)
    elif method == "import-export":
        import tablib
        from import_export import resources

        class AgentResource(resources.ModelResource):
            class Meta:
                model = Agent
                fields = (
                    "email",
                    "given_name",
                    "usual_name",
                    "external_id",
                    "organizational_unit",
                    "ministry",
                )
                import_id_fields = ("email",)
                use_bulk = True
                batch_size = 2000

            def before_import_row(self, row, **kwargs):
                row["ministry"] = ministry.pk

        dataset = tablib.Dataset().load(path.read_text(encoding="utf-8"), format="csv")
        result = AgentResource().import_data(dataset, dry_run=False, raise_errors=True)
        assert not result.has_errors()
    elif method == "copy":
        from django.db import connection
        from django.utils import timezone

        now = timezone.now()
        columns = (
            "id, password, is_superuser, email, given_name, usual_name, ministry_id, "
            "external_id, organizational_unit, is_active, is_staff, created_at, "
            "updated_at"
        )
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY accounts_agent ({columns}) FROM STDIN") as copy:
                for line in path.read_text(encoding="utf-8").splitlines()[1:]:
                    email, given, usual, ext, unit = line.split(",")
                    copy.write_row(
                        (
                            uuid.uuid4(),
                            "!",
                            False,
                            email,
                            given,
                            usual,
                            ministry.pk,
                            ext,
                            unit,
                            True,
                            False,
                            now,
                            now,
                        )
                    )
    seconds = time.perf_counter() - started
    count = Agent.objects.filter(ministry=ministry).count()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "rows": count}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", choices=["ours", "import-export", "copy"])
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file)
        return 0
    db_name = "bench_import"
    env = env_for(db_name)
    env["BENCH_SECRET"] = env["SECRET_KEY"]
    prepare(db_name, seats=args.rows * 2)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = write_files(Path(tmp), args.rows)
        for method, path in (("ours", ours), ("import-export", theirs), ("copy", theirs)):
            empty_table(db_name)
            out = subprocess.run(
                [sys.executable, __file__, "--child", method, "--file", str(path)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])
            assert results[method]["rows"] == args.rows, results[method]
    for method, r in results.items():
        print(
            f"{method:14} {args.rows / r['seconds']:10.0f} rows/s  {r['seconds']:7.2f} s  "
            f"peak {r['peak_mb']:6.0f} MB"
        )
    ours_rate = args.rows / results["ours"]["seconds"]
    print(
        f"ours / django-import-export: "
        f"{ours_rate / (args.rows / results['import-export']['seconds']):.1f}x "
        f"(target >= 5x); ours / COPY: "
        f"{ours_rate / (args.rows / results['copy']['seconds']):.2f}; "
        f"our peak {results['ours']['peak_mb']:.0f} MB (target < 200 MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
