"""Benchmark: the Monday 9 o'clock peak, agents logging in and joining their meetings.

Starts the service as in production on this machine: gunicorn (sync workers,
``DEBUG`` off), two Celery workers (prefork) and beat, PostgreSQL (database
``bench_peak``), Redis (broker, cache and sessions), simulated LiveKit nodes in two
regions (``python -m devtools.livekit_sim``, two processes, signed webhooks back to
the service) and the dev identity provider (``deploy/dev-idp``). Nodes are
registered through the service (credentials checked against the node).

Then a load generator, in its own process, plays the morning:

1. **Logins.** Every agent of the run logs in through the real OpenID Connect flow
   (ProConnect button, the IdP's login, callback, code exchange, userinfo, session,
   landing on the console), several at a time. Figures: logins per second and
   latency percentiles.
2. **Joins at a rising rate** (open loop: arrivals are scheduled at the offered rate
   whatever the answers, and each is timed from its scheduled instant, so a slow
   service cannot slow the arrivals down and hide its own latency). An arrival is an
   agent who opens their rooms (``GET /api/v1/rooms/``), then joins their meeting
   (``POST /api/v1/rooms/{slug}/join/``, following a ``202`` by calling again after
   its ``Retry-After``) until they hold a LiveKit token. Meetings gather
   ``--room-size`` agents who arrive at random instants within the same step; the
   first arrival of a meeting places it on a node (through Celery), the others find
   it live.

Why logins come first and not inside each arrival: one login costs the service and
the IdP more CPU than the arrival it precedes, so on this 2-CPU machine logins inside
the join load would mostly measure the login again (``bench/login.py`` does) rather
than the joins. The sessions the joins use are the ones the real login flow created (in
Redis, as in production); nothing is forged. ``--login-in-load`` puts the login
inside every arrival instead, for the fully end-to-end figure.

Per step it prints the offered rate, the joins per second achieved (successful joins
of the step over the time until the step's last answer), latency percentiles from
arrival to token (p50, p95, p99), the number of ``202`` answers and the errors; then
the highest offered rate held with p99 under one second and no error.

Login rate limits per client address are off: every agent comes from the generator's
one address, where production sees thousands.

The database is created from a template ``bench_peak_template`` kept migrated
(rebuilt when the migrations or Django change), so a run does not pay for ``migrate``.

    .venv/bin/python bench/peak.py                     # full size
    .venv/bin/python bench/peak.py --quick             # smallest size (the test's)
    .venv/bin/python bench/peak.py --steps 10,20,40 --step-seconds 20 --workers 6
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import psycopg
import requests
from postgres_server import database_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.idp import running_dev_idp  # noqa: E402  (the dev IdP launcher)

DB = "bench_peak"
TEMPLATE = "bench_peak_template"
ADMIN_DB = database_url("postgres")
SIRET = "11004401300016"
DOMAIN = "peak.gouv.fr"
NODE_KEY = "peakkey"
NODE_SECRET = "peak-node-secret-".ljust(40, "x")
QUEUES = "default,allocation,health,provisioning,reports,audit"
REQUEST_TIMEOUT = 30.0  # an arrival not done by then is an error


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# --- The service ----------------------------------------------------------------------


def service_env(base: str, redis_url: str, idp) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": "peak-" + "k" * 60,
        "DATABASE_URL": database_url(DB),
        "DATABASE_CONN_MAX_AGE": "600",
        "CELERY_BROKER_URL": redis_url,
        "CACHE_URL": redis_url,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SESSION_COOKIE_AGE": "3600",  # the run's sessions leave Redis within the hour
        "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "OIDC_OP_DISCOVERY_URL": f"{idp.issuer}/.well-known/openid-configuration",
        "OIDC_RP_CLIENT_ID": idp.client_id,
        "OIDC_RP_CLIENT_SECRET": idp.client_secret,
        "LOG_LEVEL": "WARNING",
        # Every agent comes from the generator's one address here; in production they
        # come from many (a ministry behind one NAT needs its limit raised likewise).
        "RATE_LIMIT_LOGIN": "0/m",
        "RATE_LIMIT_LOGIN_FAILURES": "0/m",
    }


def migrations_fingerprint() -> str:
    """What the template's schema depends on: every migration file, and Django."""
    import django

    digest = hashlib.sha256(django.__version__.encode())
    for path in sorted(ROOT.glob("*/migrations/*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def prepare_database(env: dict) -> float:
    """``bench_peak`` as a copy of a migrated template; seconds spent migrating."""
    fingerprint = migrations_fingerprint()
    spent = 0.0
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (TEMPLATE,),
        ).fetchone()
        if row is None or row[0] != fingerprint:
            started = time.perf_counter()
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
            template_env = {**env, "DATABASE_URL": database_url(TEMPLATE)}
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0"],
                cwd=ROOT,
                env=template_env,
                check=True,
            )
            conn.execute(f"COMMENT ON DATABASE \"{TEMPLATE}\" IS '{fingerprint}'")
            spent = time.perf_counter() - started
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}" TEMPLATE "{TEMPLATE}"')
    return spent


SEED = """
import json, sys, uuid, datetime
from django.utils import timezone
from accounts.models import Agent, Ministry, MinistryDomain, MinistrySiret
from accounts.grants import operator_bootstrap
from audit.actor import Actor
from controlplane.celery import app
from media_nodes import queueing
from media_nodes import services as node_services
from rooms.models import Room

plan = json.loads(sys.stdin.read())
app.control.purge()
stale = [queueing.PENDING] + [queueing.SLOT.format(i) for i in range(64)]
stale += [queueing.INFLIGHT.format(i) for i in range(64)]
queueing.client().delete(*stale)

operator = operator_bootstrap(actor=Actor.system("bench/peak.py"),
    email="operateur@peak.gouv.fr", given_name="Opé", usual_name="Rateur").agent
actor = Actor(user=operator, label="bench")
for node in plan["nodes"]:
    node_services.node_add(actor=actor, name=node["name"], url=node["url"],
        api_key=plan["node_key"], api_secret=plan["node_secret"], region=node["region"],
        capacity=plan["node_capacity"], check=True)

m = Ministry.objects.create(code="peak", name="Ministère du Pic", siren=plan["siret"][:9],
    state="rolling_out", jit_provisioning=False)
MinistryDomain.objects.create(ministry=m, domain=plan["domain"])
MinistrySiret.objects.create(ministry=m, siret=plan["siret"])
yesterday = timezone.now() - datetime.timedelta(days=1)
agents = Agent.objects.bulk_create([
    Agent(email=a["email"], ministry=m, sub=a["sub"], given_name="Agent",
          usual_name=a["email"].split("@")[0], password="!", last_login=yesterday)
    for a in plan["agents"]])
by_email = {a.email: a for a in agents}
rooms = {}
for a in plan["agents"]:
    if a["slug"] not in rooms:
        rooms[a["slug"]] = Room(slug=a["slug"], name="Point de 9 h", owner=by_email[a["email"]],
            ministry=m, access="invited", expected_size=plan["room_size"])
Room.objects.bulk_create(rooms.values())
Through = Room.invitees.through
Through.objects.bulk_create([Through(room_id=rooms[a["slug"]].pk,
    agent_id=by_email[a["email"]].pk) for a in plan["agents"]])
print(json.dumps({"agents": len(agents), "rooms": len(rooms)}))
"""


class Processes:
    """Every process the bench started, stopped in reverse order at the end."""

    def __init__(self):
        self.started: list[tuple[str, subprocess.Popen]] = []
        self.logs = tempfile.TemporaryDirectory(prefix="peak-logs-")

    def start(self, name: str, argv: list[str], env: dict, **kwargs) -> subprocess.Popen:
        log = open(Path(self.logs.name) / f"{name}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=kwargs.pop("stdout", log), stderr=log, **kwargs
        )
        self.started.append((name, process))
        return process

    def log(self, name: str) -> str:
        path = Path(self.logs.name) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check_alive(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited ({process.returncode}):\n{self.log(name)[-3000:]}")

    def stop(self) -> None:
        for _name, process in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for _name, process in reversed(self.started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.logs.cleanup()


def start_nodes(procs: Processes, env: dict, base: str, count: int) -> list[dict]:
    """Simulated nodes in two regions, two processes; returns name, region and URL."""
    nodes = []
    regions = ["paris", "lyon"]
    for index, region in enumerate(regions):
        share = count // 2 + (1 if index < count % 2 else 0)
        if share == 0:
            continue
        process = procs.start(
            f"nodes-{region}",
            [
                sys.executable,
                "-m",
                "devtools.livekit_sim",
                "--nodes",
                str(share),
                "--region",
                region,
                "--base-port",
                "0",
                "--key",
                NODE_KEY,
                "--secret",
                NODE_SECRET,
                "--webhook-url",
                f"{base}/hooks/livekit/",
            ],
            env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(share):
            line = process.stdout.readline()
            match = re.match(r"(\S+) region=(\S+) url=(\S+)", line)
            if not match:
                raise SystemExit(f"simulated nodes did not start: {line!r}")
            nodes.append({"name": match[1], "region": match[2], "url": match[3]})
        threading.Thread(target=process.stdout.read, daemon=True).start()
    return nodes


def start_workers(procs: Processes, env: dict, concurrency: int) -> None:
    for index in range(2):
        procs.start(
            f"worker{index}",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--queues",
                QUEUES,
                "--hostname",
                f"peak{index}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            env,
        )


def wait_workers(redis_url: str, count: int, procs: Processes, timeout: float = 60) -> None:
    from celery import Celery
    from kombu import Connection

    # A CELERY_BROKER_URL in the environment (the test suite sets one) would win over
    # Celery(broker=...): ping through a mailbox on this run's own broker instead.
    app = Celery()
    deadline = time.monotonic() + timeout
    with Connection(redis_url) as connection:
        mailbox = app.control.Mailbox("celery", type="fanout", accept=["json"])(connection)
        while time.monotonic() < deadline:
            procs.check_alive()
            replies = mailbox._broadcast("ping", reply=True, timeout=0.5) or []
            if len([r for r in replies if list(r)[0].startswith("peak")]) >= count:
                return
    raise SystemExit("the Celery workers did not answer within 60 s")


def wait_ready(base: str, procs: Processes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"the service was not ready within {timeout:.0f} s")


# --- Where the CPU goes ---------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return pids


def _cpu(pid: int) -> float:
    """User and system seconds of one process (fields 14 and 15 of its stat line)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot (every process, ours or not)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of processes (with their children), of this
    run's PostgreSQL backends, and of the whole machine."""
    snapshot = {
        name: sum(_cpu(p) for root in roots for p in _process_tree(root))
        for name, roots in groups.items()
    }
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        backends = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (DB,)
        ).fetchall()
    snapshot["postgres"] = sum(_cpu(pid) for (pid,) in backends)
    snapshot["machine"] = machine_busy()
    return snapshot


def cpu_report(label: str, before: dict, after: dict, wall: float) -> str:
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    machine = spent.pop("machine")
    ours = sum(spent.values())
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items())
    return (
        f"CPU seconds during {label} ({wall:.1f} s): {parts}; this run {ours:.1f}, "
        f"other work on the machine {max(machine - ours, 0):.1f} "
        f"(of {os.cpu_count()} CPUs x {wall:.1f} s = {os.cpu_count() * wall:.0f})"
    )


# --- The load generator (its own process) ---------------------------------------------


class Agent:
    """One agent's browser: a cookie jar, and the meeting they go to."""

    def __init__(self, email: str, slug: str):
        self.email, self.slug = email, slug
        self.http = requests.Session()
        self.http.trust_env = False


def login(agent: Agent, base: str) -> None:
    """The real flow, redirect by redirect, ending on the console (which sets the CSRF
    cookie the API's writes need)."""
    url = f"{base}/oidc/authenticate/?login_hint={agent.email}"
    for _ in range(15):
        response = agent.http.get(url, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        location = response.headers.get("Location")
        if response.status_code not in (301, 302, 303) or not location:
            raise RuntimeError(f"login stopped at {url.split('?')[0]}: {response.status_code}")
        url = urljoin(url, location)
        if url == f"{base}/console/":
            break
    else:
        raise RuntimeError("login: too many redirects")
    page = agent.http.get(url, timeout=REQUEST_TIMEOUT)
    if page.status_code != 200 or "csrftoken" not in agent.http.cookies:
        raise RuntimeError(f"console after login: {page.status_code}")


def arrive(agent: Agent, base: str, with_login: bool) -> int:
    """Open the rooms, join, call again on 202 until a token is held; returns the
    number of 202 answers. Raises on anything else."""
    if with_login:
        login(agent, base)
    rooms = agent.http.get(f"{base}/api/v1/rooms/", timeout=REQUEST_TIMEOUT)
    if rooms.status_code != 200:
        raise RuntimeError(f"rooms {rooms.status_code}")
    if agent.slug not in {room["slug"] for room in rooms.json()["results"]}:
        raise RuntimeError("rooms: the meeting is not listed")
    headers = {"X-CSRFToken": agent.http.cookies["csrftoken"]}
    url = f"{base}/api/v1/rooms/{agent.slug}/join/"
    waits = 0
    while True:
        joined = agent.http.post(url, json={}, headers=headers, timeout=REQUEST_TIMEOUT)
        if joined.status_code != 202:
            break
        waits += 1
        time.sleep(float(joined.headers.get("Retry-After", "1")))
    if joined.status_code != 200:
        raise RuntimeError(f"join {joined.status_code}")
    if not joined.json().get("token"):
        raise RuntimeError("join: no token")
    return waits


def generate(config_path: str) -> int:
    """The load generator's process: read the plan, play it, write the results."""
    config = json.loads(Path(config_path).read_text())
    base = config["base"]
    agents = [Agent(a["email"], a["slug"]) for a in config["agents"]]
    warmup = agents[: config["warmup"]]
    measured = agents[config["warmup"] :]
    with_login = config["login_in_load"]
    results: dict = {}

    # 1. Logins (warm-up agents first: they also warm every gunicorn worker up).
    for agent in warmup:
        login(agent, base)
    print("PHASE logins", flush=True)
    to_login = [] if with_login else measured
    login_times: list[float] = []
    login_errors: dict[str, int] = {}

    def timed_login(agent):
        started = time.perf_counter()
        try:
            login(agent, base)
            login_times.append(time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
            kind = str(exc)[:60]
            login_errors[kind] = login_errors.get(kind, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(config["login_concurrency"]) as pool:
        list(pool.map(timed_login, to_login))
    results["logins"] = {
        "count": len(login_times),
        "seconds": time.perf_counter() - started,
        "times": login_times,
        "errors": login_errors,
    }

    # 2. Warm-up joins (placements, prepared statements), not measured.
    for agent in warmup:
        arrive(agent, base, with_login=False)
    print("PHASE joins", flush=True)

    # 3. Open-loop steps.
    schedule: list[tuple[int, float, Agent]] = []  # (step, scheduled instant, agent)
    offset, cursor = 0.0, 0
    for index, (rate, seconds) in enumerate(config["steps"]):
        count = int(rate * seconds)
        instants = [offset + i / rate for i in range(count)]
        step_agents = measured[cursor : cursor + count]
        random.Random(index).shuffle(step_agents)  # a meeting's members arrive apart
        schedule += [(index, t, a) for t, a in zip(instants, step_agents, strict=True)]
        offset += seconds
        cursor += count
    outcomes: list[dict] = []
    lock = threading.Lock()

    def play(step: int, scheduled: float, agent: Agent) -> None:
        error, waits = None, 0
        try:
            waits = arrive(agent, base, with_login)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
            error = str(exc)[:60] if isinstance(exc, RuntimeError) else type(exc).__name__
        done = time.perf_counter() - t0
        with lock:
            outcomes.append(
                {
                    "step": step,
                    "latency": done - scheduled,
                    "done": done,
                    "error": error,
                    "waits": waits,
                }
            )

    with ThreadPoolExecutor(config["max_in_flight"]) as pool:
        t0 = time.perf_counter()
        for step, scheduled, agent in schedule:
            delay = scheduled - (time.perf_counter() - t0)
            if delay > 0:
                time.sleep(delay)
            pool.submit(play, step, scheduled, agent)
    print("PHASE end", flush=True)
    results["outcomes"] = outcomes
    Path(config["results"]).write_text(json.dumps(results))
    return 0


# --- The run --------------------------------------------------------------------------


def plan_agents(steps, step_seconds: float, room_size: int, warmup: int) -> list[dict]:
    """Warm-up agents, then each step's agents, gathered in meetings within their step."""
    agents = []
    groups = [warmup] + [int(rate * step_seconds) for rate in steps]
    number = 0
    for group_index, size in enumerate(groups):
        for i in range(size):
            agents.append(
                {
                    "email": f"agent{number}@{DOMAIN}",
                    "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"peak{number}")),
                    "slug": f"pic-{group_index:02d}-{i // room_size:04d}",
                }
            )
            number += 1
    return agents


def idp_accounts(agents: list[dict]) -> list[dict]:
    return [
        {
            "sub": a["sub"],
            "email": a["email"],
            "given_name": "Agent",
            "usual_name": a["email"].split("@")[0],
            "uid": a["email"].split("@")[0],
            "siret": SIRET,
            "idp_id": "peak-idp",
            "organizational_unit": "Bureau du pic",
        }
        for a in agents
    ]


def report(results: dict, steps, step_seconds: float, with_login: bool) -> None:
    logins = results["logins"]
    if logins["count"]:
        times = logins["times"]
        print(
            f"logins through the IdP: {logins['count']} in {logins['seconds']:.1f} s, "
            f"{logins['count'] / logins['seconds']:.1f}/s; "
            f"p50 {percentile(times, 0.5) * 1000:.0f} ms, "
            f"p95 {percentile(times, 0.95) * 1000:.0f} ms, "
            f"p99 {percentile(times, 0.99) * 1000:.0f} ms; "
            f"errors {sum(logins['errors'].values())} {logins['errors'] or ''}".rstrip()
        )
    what = "login, rooms, join" if with_login else "rooms, join"
    print(f"arrivals ({what}), open loop, {step_seconds:g} s per step:")
    print(
        f"{'offered/s':>9} {'arrivals':>8} {'joins/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'202s':>5} {'errors':>6}"
    )
    held = None
    offset = 0.0
    for index, rate in enumerate(steps):
        rows = [o for o in results["outcomes"] if o["step"] == index]
        ok = [o for o in rows if o["error"] is None]
        errors = len(rows) - len(ok)
        latencies = [o["latency"] for o in ok]
        last = max((o["done"] for o in rows), default=offset + step_seconds)
        achieved = len(ok) / max(step_seconds, last - offset)
        p50, p95, p99 = (percentile(latencies, q) * 1000 for q in (0.5, 0.95, 0.99))
        kinds: dict[str, int] = {}
        for o in rows:
            if o["error"]:
                kinds[o["error"]] = kinds.get(o["error"], 0) + 1
        print(
            f"{rate:>9g} {len(rows):>8} {achieved:>8.1f} {p50:>7.0f} {p95:>7.0f} {p99:>7.0f} "
            f"{sum(o['waits'] for o in rows):>5} {errors:>6}" + (f"  {kinds}" if kinds else "")
        )
        if errors == 0 and ok and p99 < 1000:
            held = rate if held is None else max(held, rate)
        offset += step_seconds
    if held is None:
        print("highest rate held (p99 < 1 s, no error): none of the steps")
    else:
        print(f"highest rate held (p99 < 1 s, no error): {held:g} joins/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="5,10,20,40,80", help="offered joins/s, rising")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--room-size", type=int, default=5, help="agents per meeting")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--celery-concurrency", type=int, default=2, help="per worker")
    parser.add_argument("--nodes", type=int, default=4, help="simulated media nodes")
    parser.add_argument("--login-concurrency", type=int, default=8)
    parser.add_argument("--max-in-flight", type=int, default=400, help="generator threads")
    parser.add_argument("--login-in-load", action="store_true", help="log in in each arrival")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_PEAK_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="broker, cache and sessions (default: $BENCH_PEAK_REDIS_URL or db 12)",
    )
    parser.add_argument("--quick", action="store_true", help="smallest size (the test's)")
    parser.add_argument("--json", action="store_true", help="print the raw figures too")
    parser.add_argument("--generate", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        return generate(args.generate)
    if args.quick:
        args.steps, args.step_seconds, args.workers, args.nodes = "2,4", 3.0, 1, 2
        args.celery_concurrency = 1
    steps = [float(s) for s in args.steps.split(",")]
    warmup = max(args.workers * 2, args.room_size)
    agents = plan_agents(steps, args.step_seconds, args.room_size, warmup)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs = Processes()
    started = time.perf_counter()
    with running_dev_idp(
        redirect_uri=f"{base}/oidc/callback/",
        post_logout_redirect_uri=f"{base}/oidc/logout/callback/",
        accounts=idp_accounts(agents),
    ) as idp:
        env = service_env(base, args.redis_url, idp)
        try:
            # Nodes and workers boot while the database is prepared.
            nodes = start_nodes(procs, env, base, args.nodes)
            start_workers(procs, env, args.celery_concurrency)
            migrated = prepare_database(env)
            plan = {
                "nodes": nodes,
                "node_key": NODE_KEY,
                "node_secret": NODE_SECRET,
                "node_capacity": 10_000,
                "siret": SIRET,
                "domain": DOMAIN,
                "room_size": args.room_size,
                "agents": agents,
            }
            procs.start(
                "beat",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "controlplane",
                    "beat",
                    "--loglevel",
                    "WARNING",
                    "--schedule",
                    str(Path(procs.logs.name) / "beat-schedule"),
                ],
                env,
            )
            procs.start(
                "gunicorn",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "controlplane.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(args.workers),
                    "--worker-class",
                    "sync",
                    "--log-level",
                    "warning",
                ],
                env,
            )
            # Seeded while gunicorn, beat and the workers boot.
            seeded = subprocess.run(
                [sys.executable, "manage.py", "shell", "-c", SEED],
                cwd=ROOT,
                env=env,
                input=json.dumps(plan),
                text=True,
                capture_output=True,
            )
            if seeded.returncode != 0:
                raise SystemExit(f"seeding failed:\n{seeded.stderr[-3000:]}")
            wait_workers(args.redis_url, 2, procs)
            wait_ready(base, procs)
            ready = time.perf_counter() - started
            migrated_note = f", template migrated in {migrated:.1f} s" if migrated else ""
            print(
                f"service: gunicorn {args.workers} sync workers, 2 Celery workers x "
                f"{args.celery_concurrency} + beat, {len(nodes)} simulated nodes, PostgreSQL, "
                f"Redis, dev IdP; {len(agents)} agents in meetings of {args.room_size}; "
                f"{os.cpu_count()} CPUs shared by all, load generator included "
                f"(ready in {ready:.1f} s{migrated_note})"
            )
            with tempfile.TemporaryDirectory() as tmp:
                config = Path(tmp) / "config.json"
                results_path = Path(tmp) / "results.json"
                config.write_text(
                    json.dumps(
                        {
                            "base": base,
                            "agents": [{"email": a["email"], "slug": a["slug"]} for a in agents],
                            "warmup": warmup,
                            "steps": [(rate, args.step_seconds) for rate in steps],
                            "login_concurrency": args.login_concurrency,
                            "login_in_load": args.login_in_load,
                            "max_in_flight": args.max_in_flight,
                            "results": str(results_path),
                        }
                    )
                )
                generator = subprocess.Popen(
                    [sys.executable, __file__, "--generate", str(config)],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                groups = {"gunicorn": [], "celery": [], "beat": [], "nodes": []}
                for name, process in procs.started:
                    group = name.rstrip("0123456789").split("-")[0].replace("worker", "celery")
                    groups[group].append(process.pid)
                groups["idp"] = [idp.process.pid]
                groups["generator"] = [generator.pid]
                snapshots = {}
                for line in generator.stdout:
                    if line.startswith("PHASE "):
                        snapshots[line.split()[1]] = (time.perf_counter(), cpu_snapshot(groups))
                if generator.wait() != 0:
                    raise SystemExit("the load generator failed")
                procs.check_alive()
                results = json.loads(results_path.read_text())
        finally:
            logs = {name: procs.log(name) for name, _ in procs.started}
            procs.stop()
    report(results, steps, args.step_seconds, args.login_in_load)
    phases = [("the joins", "joins", "end")]
    if not args.login_in_load:
        phases.insert(0, ("the logins", "logins", "joins"))
    for label, start, end in phases:
        (t0, before), (t1, after) = snapshots[start], snapshots[end]
        print(cpu_report(label, before, after, t1 - t0))
    tracebacks = [name for name, text in logs.items() if "Traceback" in text]
    if tracebacks:
        print(f"tracebacks in the logs of: {', '.join(tracebacks)}")
    print(f"total run: {time.perf_counter() - started:.1f} s")
    if args.json:
        print(json.dumps({k: v for k, v in results.items() if k != "outcomes"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
