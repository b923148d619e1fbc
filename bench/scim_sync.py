"""Benchmark: a directory's first sync through SCIM, as Microsoft Entra ID runs it.

Starts the service as deployed (gunicorn with ``deploy/gunicorn.conf.py``: gthread
workers, DEBUG off, PostgreSQL, rate limiter and broker in Redis) on a free port and
its own database, then provisions N agents the way Entra's provisioning service does
on a first cycle: for each user, from several threads at once,

1. the probe ``GET /scim/v2/Users?filter=userName eq "…"`` (an empty ListResponse);
2. ``POST /scim/v2/Users`` with an Entra-shaped create body (default attribute
   mappings: userName, active, displayName, work email, name with ``formatted``,
   externalId, title, preferredLanguage, work phone and address, enterprise
   employeeNumber and department).

Entra honours ``Retry-After`` on a 429, and so does this client: the rate limit is the
deployment's (``RATE_LIMIT_SCIM``, never raised here), and the time spent waiting on
it is reported. ``--no-rate-limit`` turns it off to measure the service's own capacity
(a separate figure, labelled as such).

Then, in the same run, the CSV import of the same N rows (``agent_import_plan`` then
``agent_import_apply``, as ``bench/import_agents.py`` runs it) on the emptied table.

Queries are counted two ways: one probe and one create run in-process through the whole
Django stack under ``CaptureQueriesContext`` (each statement listed with
``--show-queries``), and PostgreSQL's own counters (``pg_stat_database`` transactions,
``pg_stat_user_tables`` scans of the agents' table) over the whole sync, per user.

    .venv/bin/python bench/scim_sync.py --size 20000 --clients 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import psycopg
from import_agents import DOMAIN, rows, write_files
from postgres_server import database_url

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "bench_scim"
SIREN = "110044013"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(redis_url: str, rate_limit: str | None) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("BENCH_SECRET") or secrets.token_urlsafe(60),
        "DATABASE_URL": database_url(DB_NAME),
        "CELERY_BROKER_URL": redis_url,
        "CACHE_URL": redis_url,
        "ALLOWED_HOSTS": "127.0.0.1,testserver",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "AGENT_IMPORT_MAX_BYTES": str(1 << 30),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("RATE_LIMIT_SCIM", None)  # the deployment's default unless told otherwise
    if rate_limit is not None:
        env["RATE_LIMIT_SCIM"] = rate_limit
    return env


def prepare(env: dict, seats: int) -> str:
    """A fresh database with one ministry, its domain, a licence pool and a directory
    token; returns the token in clear."""
    with psycopg.connect(database_url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{DB_NAME}"')
    run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], **run)
    code = (
        "from datetime import date\n"
        "from accounts.models import Ministry, MinistryDomain\n"
        "from audit.actor import Actor\n"
        "from licensing.models import LicencePool\n"
        "from scim.tokens import directory_token_issue\n"
        f"m = Ministry.objects.create(code='bench', name='Banc', siren='{SIREN}',"
        " state='rolling_out')\n"
        f"MinistryDomain.objects.create(ministry=m, domain='{DOMAIN}')\n"
        f"LicencePool.objects.create(ministry=m, starts_on=date(2020,1,1),"
        f" ends_on=date(2099,1,1), seats={seats}, foreign_price_eur=10,"
        " sovereign_cost_eur=1)\n"
        "token, clear = directory_token_issue(actor=Actor.system('bench'), ministry=m)\n"
        "print('TOKEN=' + clear)\n"
    )
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], **run)
    return next(line[6:] for line in out.stdout.splitlines() if line.startswith("TOKEN=")).strip()


def entra_body(email: str, given: str, usual: str, external_id: str, unit: str, i: int) -> dict:
    """A create body as Entra ID sends it with its default attribute mappings."""
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": external_id,
        "userName": email,
        "active": True,
        "displayName": f"{given} {usual}",
        "emails": [{"primary": True, "type": "work", "value": email}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": f"{given} {usual}", "familyName": usual, "givenName": given},
        "title": "Chargé de mission",
        "preferredLanguage": "fr-FR",
        "phoneNumbers": [{"type": "work", "value": f"+33 1 40 00 {i % 100:02d} {i % 97:02d}"}],
        "addresses": [
            {
                "type": "work",
                "streetAddress": "20 avenue de Ségur",
                "locality": "Paris",
                "postalCode": "75007",
                "country": "FR",
            }
        ],
        "roles": [],
        ENTERPRISE_SCHEMA: {"employeeNumber": f"{i:08d}", "department": unit},
    }


def plain_body(email: str, given: str, usual: str, external_id: str, unit: str, i: int) -> dict:
    """The same user with only the attributes the first SCIM version published."""
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": external_id,
        "userName": email,
        "active": True,
        "name": {"familyName": usual, "givenName": given},
        ENTERPRISE_SCHEMA: {"department": unit},
    }


BODIES = {"entra": entra_body, "plain": plain_body}


def probe_path(email: str) -> str:
    return "/scim/v2/Users?filter=" + quote(f'userName eq "{email}"')


def new_stats() -> dict:
    return {"lock": threading.Lock(), "throttled": 0, "throttled_s": 0.0, "reconnects": 0}


class Client:
    """One Entra-like worker thread's connection: keep-alive, Retry-After on 429."""

    def __init__(self, port: int, token: str, stats: dict):
        self.port, self.stats = port, stats
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/scim+json",
            "Accept": "application/scim+json",
        }
        self.conn = None

    def request(self, method: str, path: str, body: bytes | None = None):
        """(status, parsed body, seconds of the accepted attempt)."""
        retried = False
        while True:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                raw = response.read()
            except (http.client.HTTPException, OSError):
                # A keep-alive connection the server closed (a recycled worker): again.
                self.conn.close()
                self.conn = None
                if retried:
                    raise
                retried = True
                self.stats["reconnects"] += 1
                continue
            elapsed = time.perf_counter() - started
            if response.status == 429:
                wait = float(response.getheader("Retry-After") or 1)
                with self.stats["lock"]:
                    self.stats["throttled"] += 1
                    self.stats["throttled_s"] += wait
                time.sleep(wait)
                continue
            return response.status, (json.loads(raw) if raw else None), elapsed, retried


def sync(port: int, token: str, size: int, clients: int, body_kind: str) -> dict:
    """Probe then create every user, from ``clients`` threads; timings per request."""
    stats = new_stats()
    local = threading.local()
    make_body = BODIES[body_kind]

    def one(row_index: int):
        if not hasattr(local, "client"):
            local.client = Client(port, token, stats)
        email, given, usual, external_id, unit = row_index[1]
        status, body, probe_s, _ = local.client.request("GET", probe_path(email))
        if status != 200 or body.get("totalResults") != 0:
            raise RuntimeError(f"probe for {email}: {status} {body}")
        payload = json.dumps(
            make_body(email, given, usual, external_id, unit, row_index[0])
        ).encode()
        status, body, create_s, retried = local.client.request("POST", "/scim/v2/Users", payload)
        if status != 201 and not (retried and status == 409):
            raise RuntimeError(f"create of {email}: {status} {body}")
        return probe_s, create_s

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        timings = list(pool.map(one, enumerate(rows(size))))
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "probe": [t[0] for t in timings],
        "create": [t[1] for t in timings],
        "throttled": stats["throttled"],
        "throttled_s": stats["throttled_s"],
        "reconnects": stats["reconnects"],
    }


def pg_counters(conn) -> dict:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    db = conn.execute(
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_fetched, tup_returned "
        "FROM pg_stat_database WHERE datname = %s",
        [DB_NAME],
    ).fetchone()
    table = conn.execute(
        "SELECT seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables "
        "WHERE relname = 'accounts_agent'"
    ).fetchone()
    keys = ("xact_commit", "xact_rollback", "tup_inserted", "tup_fetched", "tup_returned")
    return {
        **dict(zip(keys, db, strict=True)),
        "agent_seq_scan": table[0],
        "agent_seq_tup_read": table[1],
        "agent_idx_scan": table[2] or 0,
    }


def child_queries(token: str, index: int, body_kind: str, show: bool) -> None:
    """In this process, one probe and one create through the whole Django stack, under
    CaptureQueriesContext; print the counts as JSON (and the statements if asked)."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext

    email = f"queries{index:06d}@{DOMAIN}"
    client = DjangoClient(HTTP_AUTHORIZATION=f"Bearer {token}")
    with CaptureQueriesContext(connection) as probe:
        response = client.get(probe_path(email))
    assert response.status_code == 200, response.content
    body = BODIES[body_kind](email, "Agent", "Requêtes", f"Q{index:06d}", "Direction 1", index)
    with CaptureQueriesContext(connection) as create:
        response = client.post(
            "/scim/v2/Users", json.dumps(body), content_type="application/scim+json"
        )
    assert response.status_code == 201, response.content
    if show:
        for label, captured in (("probe", probe), ("create", create)):
            for n, query in enumerate(captured.captured_queries, 1):
                print(f"{label} {n:2d}: {query['sql'][:220]}", file=sys.stderr)
    boundaries = sum(q["sql"] in ("BEGIN", "COMMIT") for q in create.captured_queries)
    print(json.dumps({"probe": len(probe), "create": len(create), "boundaries": boundaries}))


def count_queries(env: dict, token: str, index: int, body_kind: str, show: bool) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-queries", str(index), "--body", body_kind]
        + (["--show-queries"] if show else []),
        cwd=ROOT,
        env={**env, "BENCH_SCIM_TOKEN": token},
        capture_output=True,
        text=True,
        check=False,
    )
    if show:
        print(out.stderr, file=sys.stderr, end="")
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def csv_import(env: dict, size: int) -> float:
    """The same rows through the CSV import, on the emptied agents' table: seconds."""
    with psycopg.connect(database_url(DB_NAME), autocommit=True) as c:
        c.execute("DELETE FROM accounts_agent")
        c.execute("VACUUM ANALYZE accounts_agent")
    with tempfile.TemporaryDirectory() as tmp:
        ours, _ = write_files(Path(tmp), size)
        out = subprocess.run(
            [sys.executable, "bench/import_agents.py", "--child", "ours", "--file", str(ours)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == size, result
    return result["seconds"]


def start_gunicorn(env: dict, port: int, workers: int, metrics_dir: str) -> subprocess.Popen:
    server_env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_WORKER_TMP_DIR": "/dev/shm",  # noqa: S108 - as in the pod
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"]
        + ["controlplane.wsgi"],
        cwd=ROOT,
        env=server_env,
        stdout=subprocess.DEVNULL,  # the access log, written as in production, not kept
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {server.stderr.read()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] * 1000


def main() -> int:
    global DB_NAME  # noqa: PLW0603 - one database per run, named once
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="users to provision")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--body", choices=sorted(BODIES), default="entra")
    parser.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="turn RATE_LIMIT_SCIM off (the service's capacity, not a deployment's)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"),
        help="rate limiter (CACHE_URL) and broker",
    )
    parser.add_argument("--database", default=DB_NAME, help="made, then dropped at the end")
    parser.add_argument("--show-queries", action="store_true")
    parser.add_argument("--child-queries", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    DB_NAME = args.database
    if args.child_queries is not None:
        token = os.environ["BENCH_SCIM_TOKEN"]
        child_queries(token, args.child_queries, args.body, args.show_queries)
        return 0

    env = env_for(args.redis_url, "0/m" if args.no_rate_limit else None)
    env["BENCH_SECRET"] = env["SECRET_KEY"]
    token = prepare(env, seats=args.size * 2 + 10)
    try:
        port = free_port()
        with tempfile.TemporaryDirectory() as metrics_dir:
            server = start_gunicorn(env, port, args.workers, metrics_dir)
            try:
                # Warm-up: every worker imports SCIM's modules and opens its connection.
                warm = new_stats()
                for _ in range(args.workers * 4):
                    Client(port, token, warm).request("GET", probe_path(f"nobody@{DOMAIN}"))
                with psycopg.connect(database_url(DB_NAME), autocommit=True) as pg:
                    before = pg_counters(pg)
                    result = sync(port, token, args.size, args.clients, args.body)
                    time.sleep(1.5)  # backends flush their statistics within a second
                    after = pg_counters(pg)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
        queries = count_queries(env, token, args.size, args.body, args.show_queries)
        import_s = csv_import(env, args.size)
    finally:
        with psycopg.connect(database_url("postgres"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    n = args.size
    rate = n / result["wall"]
    delta = {k: after[k] - before[k] for k in before}
    limit = "off (--no-rate-limit)" if args.no_rate_limit else "the deployment's RATE_LIMIT_SCIM"
    print(
        f"SCIM first sync: {n} users, {args.clients} clients, gunicorn "
        f"{args.workers} workers (deploy/gunicorn.conf.py), body {args.body}, rate limit {limit}"
    )
    print(f"users per second: {rate:.1f} ({result['wall']:.1f} s)")
    print(
        f"probe  latency p50 {pct(result['probe'], 0.5):.1f} ms, "
        f"p99 {pct(result['probe'], 0.99):.1f} ms, "
        f"mean {statistics.mean(result['probe']) * 1000:.1f} ms"
    )
    print(
        f"create latency p50 {pct(result['create'], 0.5):.1f} ms, "
        f"p99 {pct(result['create'], 0.99):.1f} ms, "
        f"mean {statistics.mean(result['create']) * 1000:.1f} ms"
    )
    print(
        f"throttled (429): {result['throttled']} answers, "
        f"{result['throttled_s']:.0f} s waited over all clients; "
        f"reconnects: {result['reconnects']}"
    )
    create_queries = queries["create"] - queries["boundaries"]
    print(
        f"queries in-process: probe {queries['probe']}, create {create_queries} "
        f"(+{queries['boundaries']} BEGIN/COMMIT; target <= 8: "
        f"{'met' if create_queries <= 8 else 'NOT met'})"
    )
    print(
        "PostgreSQL per user (probe + create): "
        f"transactions {(delta['xact_commit'] + delta['xact_rollback']) / n:.2f}, "
        f"rows inserted {delta['tup_inserted'] / n:.2f}, "
        f"seq scans of agents {delta['agent_seq_scan'] / n:.2f} "
        f"({delta['agent_seq_tup_read'] / n:.0f} rows read), "
        f"index scans of agents {delta['agent_idx_scan'] / n:.2f}"
    )
    print(f"CSV import of the same rows: {n / import_s:.0f} rows/s ({import_s:.2f} s)")
    print(
        f"SCIM / CSV import: {rate / (n / import_s):.3f}; "
        f"target >= 150 users/s: {'met' if rate >= 150 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
