"""Benchmark: exporting participant sessions, and the month's usage roll-up, in one run.

On its own database (``bench_export``), filled with ``--sessions`` participant
sessions (default 5,000,000) of one month, with their meetings, agents and
ministries, loaded with PostgreSQL ``COPY``:

1. this service's CSV export of the ``sessions`` dataset over the whole month
   (``usage.exports``: server-side cursor, CSV writer, consumed as a client
   would), in its own process: rows per second and peak memory (max RSS);
2. ``COPY (SELECT <the export's own query>) TO STDOUT`` of the same rows, in its
   own process: the ceiling;
3. the month's roll-up, ``usage.rollup.rollup_days(first, last)`` when that module
   exists, beside one plain ``GROUP BY`` of the same aggregation (per ministry and
   day: sessions, participant-minutes, distinct agents, meetings).

Targets: export at least 1/3 of ``COPY``'s rate with peak memory under 150 MB;
roll-up within 2 times the plain ``GROUP BY``.

    .venv/bin/python bench/export.py --sessions 5000000
    .venv/bin/python bench/export.py --sessions 5000000 --reuse   # keep the data
"""

import argparse
import importlib.util
import json
import os
import resource
import secrets
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from postgres_server import database_url

ROOT = Path(__file__).resolve().parent.parent
DB = "bench_export"
MONTH = date(2026, 10, 1)
LAST_DAY = date(2026, 10, 31)
MINISTRIES = 20
AGENTS_PER_MINISTRY = 2500
SESSIONS_PER_MEETING = 8
UNITS = 12


def env_for(db_name: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("BENCH_SECRET", secrets.token_urlsafe(60)),
        "DATABASE_URL": database_url(db_name),
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


def run_child(mode: str, env: dict, *extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"child {mode} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def paris_bounds() -> tuple[datetime, datetime]:
    paris = ZoneInfo("Europe/Paris")
    start = datetime(MONTH.year, MONTH.month, 1, tzinfo=paris)
    return start, datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, tzinfo=paris) + timedelta(
        days=1
    )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- children (each a fresh process with Django set up) ------------------------------


def child_fill(sessions: int) -> dict:
    """Ministries and an operator through the ORM; agents, meetings and sessions by COPY."""
    import django

    django.setup()
    from django.db import connection

    from accounts.identifiers import luhn_valid
    from accounts.models import Agent, Ministry, Role, RoleGrant

    def with_key(base: str) -> str:
        return next(base + str(d) for d in range(10) if luhn_valid(base + str(d)))

    ministries = [
        Ministry.objects.create(
            code=f"m{i:02d}", name=f"Ministère {i}", siren=with_key(f"3{i:07d}")
        )
        for i in range(MINISTRIES)
    ]
    operator = Agent.objects.create(email="operator@bench.gouv.fr", ministry=None)
    RoleGrant.objects.create(agent=operator, role=Role.OPERATOR)
    now = datetime.now(UTC)
    started = time.perf_counter()
    agent_ids = []
    meetings = max(1, sessions // SESSIONS_PER_MEETING)
    # Days are Paris days, as in the export's and the roll-up's periods.
    month_start, month_end = paris_bounds()
    seconds_in_month = int((month_end - month_start).total_seconds()) - 600
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(
            "COPY accounts_agent (id, password, is_superuser, email, given_name, usual_name, "
            "ministry_id, external_id, organizational_unit, is_active, is_staff, created_at, "
            "updated_at) FROM STDIN"
        ) as copy:
            for m, ministry in enumerate(ministries):
                for a in range(AGENTS_PER_MINISTRY):
                    pk = uuid.UUID(int=(1 << 100) | (m << 32) | a)
                    agent_ids.append((pk, ministry.pk, f"Bureau {a % UNITS}"))
                    copy.write_row(
                        (
                            pk,
                            "!",
                            False,
                            f"a{a}@{ministry.code}.gouv.fr",
                            "Agent",
                            f"N{a}",
                            ministry.pk,
                            "",
                            f"Bureau {a % UNITS}",
                            True,
                            False,
                            now,
                            now,
                        )
                    )
        meeting_starts = []
        with raw.copy(
            "COPY rooms_meetingsession (id, created_at, updated_at, room_id, room_name, "
            "ministry_id, node_id, livekit_sid, started_at, ended_at, peak_participants) "
            "FROM STDIN"
        ) as copy:
            for i in range(meetings):
                start = month_start + timedelta(seconds=(i * 7919) % seconds_in_month)
                meeting_starts.append(start)
                copy.write_row(
                    (
                        uuid.UUID(int=(2 << 100) | i),
                        now,
                        now,
                        None,
                        f"bench-{i:08d}",
                        ministries[i % MINISTRIES].pk,
                        None,
                        f"RM_{i:010d}",
                        start,
                        start + timedelta(hours=1),
                        SESSIONS_PER_MEETING,
                    )
                )
        with raw.copy(
            "COPY rooms_participantsession (id, created_at, updated_at, meeting_id, agent_id, "
            "ministry_id, identity, organizational_unit, pseudonymised_at, participant_sid, "
            "joined_at, left_at, duration_seconds) FROM STDIN"
        ) as copy:
            n_agents = len(agent_ids)
            for i in range(sessions):
                meeting = i // SESSIONS_PER_MEETING
                agent, ministry_id, unit = agent_ids[(i * 104729) % n_agents]
                joined = meeting_starts[meeting] + timedelta(seconds=(i % 8) * 30)
                duration = 300 + (i * 37) % 3300
                copy.write_row(
                    (
                        uuid.UUID(int=(3 << 100) | i),
                        now,
                        now,
                        uuid.UUID(int=(2 << 100) | meeting),
                        agent,
                        ministry_id,
                        str(agent),
                        unit,
                        None,
                        f"PA_{i}",
                        joined,
                        joined + timedelta(seconds=duration),
                        duration,
                    )
                )
        cursor.execute("ANALYZE")
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


def _export_request():
    from usage.exports import ExportRequest

    return ExportRequest(
        dataset="sessions", format="csv", first_day=MONTH, last_day=LAST_DAY, delimiter=";"
    )


def child_export() -> dict:
    """The service's streamed CSV export, consumed (and counted) as a client would."""
    import django

    django.setup()
    from accounts.models import Agent
    from audit.actor import Actor
    from usage.exports import usage_export_open

    operator = Agent.objects.get(email="operator@bench.gouv.fr")
    started = time.perf_counter()
    export = usage_export_open(
        actor=Actor.system("bench"), user=operator, request=_export_request()
    )
    size = lines = 0
    for block in export.body:
        size += len(block)
        lines += block.count(b"\n")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": lines - 1, "bytes": size, "peak_mb": peak_mb()}


def child_copy() -> dict:
    """``COPY (SELECT ...) TO STDOUT`` of the export's own query, read to the end."""
    import django

    django.setup()
    from django.db import connection

    from accounts.models import Agent
    from usage.exports import sessions_queryset

    operator = Agent.objects.get(email="operator@bench.gouv.fr")
    sql, params = sessions_queryset(
        user=operator, request=_export_request()
    ).query.sql_with_params()
    started = time.perf_counter()
    size = lines = 0
    with connection.cursor() as cursor:
        query = connection.ops.compose_sql(sql, params)
        with cursor.cursor.copy(
            f"COPY ({query}) TO STDOUT WITH (FORMAT csv, DELIMITER ';', HEADER)"
        ) as copy:
            for block in copy:
                size += len(block)
                lines += bytes(block).count(b"\n")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": lines - 1, "bytes": size, "peak_mb": peak_mb()}


def child_rollup() -> dict:
    import django

    django.setup()
    from usage.rollup import rollup_days

    started = time.perf_counter()
    rollup_days(MONTH, LAST_DAY)
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


GROUP_BY = """
SELECT ps.ministry_id,
       (ps.joined_at AT TIME ZONE 'Europe/Paris')::date AS day,
       count(*) AS sessions,
       count(DISTINCT ps.meeting_id) AS meetings,
       coalesce(sum(ps.duration_seconds), 0) / 60 AS participant_minutes,
       count(DISTINCT ps.agent_id) AS agents_in_meetings
  FROM rooms_participantsession ps
 WHERE ps.joined_at >= %s AND ps.joined_at < %s
 GROUP BY 1, 2
"""


# The roll-up's own scopes (nation, ministry, ministry and unit, per day) as one plain
# GROUP BY: what a single statement gives without splitting sessions at midnight,
# attributing meetings to units or sweeping for the peak.
GROUP_BY_SCOPES = """
SELECT (ps.joined_at AT TIME ZONE 'Europe/Paris')::date AS day, ps.ministry_id,
       ps.organizational_unit,
       count(*) AS sessions,
       count(DISTINCT ps.meeting_id) AS meetings,
       coalesce(sum(ps.duration_seconds), 0) / 60 AS participant_minutes,
       count(DISTINCT ps.agent_id) AS agents_in_meetings
  FROM rooms_participantsession ps
 WHERE ps.joined_at >= %s AND ps.joined_at < %s
 GROUP BY GROUPING SETS ((1), (1, 2), (1, 2, 3))
"""


def group_by_seconds(db_name: str, query: str = GROUP_BY) -> tuple[float, int]:
    start, end = paris_bounds()
    with psycopg.connect(database_url(db_name)) as c:
        c.execute("SET work_mem = '256MB'")
        began = time.perf_counter()
        rows = c.execute(query, (start, end)).fetchall()
        return time.perf_counter() - began, len(rows)


# --- the run -----------------------------------------------------------------------


def session_count(db_name: str) -> int | None:
    try:
        with psycopg.connect(database_url(db_name)) as c:
            return c.execute("SELECT count(*) FROM rooms_participantsession").fetchone()[0]
    except psycopg.Error:
        return None


def prepare(db_name: str, env: dict, sessions: int) -> float:
    with psycopg.connect(database_url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{db_name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return run_child("fill", env, "--sessions", str(sessions))["seconds"]


def rollup_available() -> bool:
    """``usage.rollup`` exists in this tree (not merely elsewhere on the path)."""
    sys.path.insert(0, str(ROOT))
    try:
        spec = importlib.util.find_spec("usage.rollup")
    except ImportError:
        return False
    return spec is not None and Path(spec.origin).resolve().is_relative_to(ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5_000_000)
    parser.add_argument(
        "--reuse", action="store_true", help="keep bench_export if it has that many sessions"
    )
    parser.add_argument(
        "--database", default=DB, help=f"the benchmark's own database (default {DB})"
    )
    parser.add_argument("--child", choices=["fill", "export", "copy", "rollup"])
    args = parser.parse_args()
    if args.child == "fill":
        print(json.dumps(child_fill(args.sessions)))
        return 0
    if args.child:
        print(
            json.dumps(
                {"export": child_export, "copy": child_copy, "rollup": child_rollup}[args.child]()
            )
        )
        return 0

    db = args.database
    env = env_for(db)
    env["BENCH_SECRET"] = env["SECRET_KEY"]
    n = args.sessions
    if args.reuse and session_count(db) == n:
        print(f"reusing {db}: {n:,} participant sessions")
    else:
        fill = prepare(db, env, n)
        print(f"filled {n:,} participant sessions (with COPY) in {fill:.1f} s")

    copy = run_child("copy", env)
    ours = run_child("export", env)
    for label, r in (("CSV export", ours), ("COPY TO STDOUT", copy)):
        assert r["rows"] == n, (label, r)
        print(
            f"{label:15} {n / r['seconds']:10,.0f} rows/s  {r['seconds']:7.2f} s  "
            f"{r['bytes'] / 1e6:8.1f} MB out  peak {r['peak_mb']:5.0f} MB"
        )
    ratio = copy["seconds"] / ours["seconds"]
    print(
        f"export / COPY: {ratio:.2f} (target >= 0.33: {'met' if ratio >= 1 / 3 else 'NOT met'}); "
        f"export peak {ours['peak_mb']:.0f} MB "
        f"(target < 150 MB: {'met' if ours['peak_mb'] < 150 else 'NOT met'})"
    )

    plain, groups = group_by_seconds(db)
    print(f"GROUP BY        {plain:7.2f} s  ({groups} ministry-days)")
    scoped, scoped_groups = group_by_seconds(db, GROUP_BY_SCOPES)
    print(f"GROUP BY scopes {scoped:7.2f} s  ({scoped_groups} rows: nation, ministry, unit)")
    if not rollup_available():
        print("roll-up: usage.rollup not available")
        return 0
    rollup = run_child("rollup", env)
    factor = rollup["seconds"] / plain
    print(
        f"roll-up         {rollup['seconds']:7.2f} s  peak {rollup['peak_mb']:5.0f} MB; "
        f"roll-up / GROUP BY: {factor:.2f} (target <= 2: {'met' if factor <= 2 else 'NOT met'}); "
        f"roll-up / GROUP BY scopes: {rollup['seconds'] / scoped:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
