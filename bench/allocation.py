"""Benchmark: placing rooms on media nodes through Celery, in one run.

1. ceiling: pgbench's transactions per second for a one-row UPDATE on the same
   PostgreSQL, with as many clients as worker processes, and with 8 clients;
2. throughput: allocations per second through two Celery workers (prefork) on
   Redis: joins' requests are coalesced (media_nodes/queueing.py) and drained in
   batches; measured on requests queued beforehand (first to last allocation), and
   end to end with one producer asking as joins do;
3. spread: 1,000 simultaneous room starts on 10 nodes: max over mean reserved
   load, and overbooked nodes;
4. failover: a simulated node hosting ``--failover-rooms`` rooms is killed with
   Celery beat probing; time to detection, then to all its rooms re-placed.

Targets (issue 5): throughput >= 1/4 of pgbench; spread <= 1.10 with 0
overbooked; detection <= 10 s and re-placement <= 10 s more.

    .venv/bin/python bench/allocation.py
    .venv/bin/python bench/allocation.py --rooms 200 --spread-rooms 100 --failover-rooms 100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
from postgres_server import database_url, pgbench_command

ROOT = Path(__file__).resolve().parent.parent
DB = "bench_alloc"
BROKER = "redis://127.0.0.1:6379/14"
SECRET = "bench-node-secret-".ljust(40, "x")
WORKER_PROCESSES = int(os.environ.get("BENCH_WORKER_PROCESSES", "2"))  # per worker


def env() -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("BENCH_SECRET", "bench-" + "k" * 60),
        "DATABASE_URL": database_url(DB),
        "DATABASE_CONN_MAX_AGE": "600",
        "CELERY_BROKER_URL": BROKER,
        "LOG_LEVEL": "WARNING",
        "MEDIA_NODE_PROBE_EVERY_SECONDS": "1",
        "MEDIA_NODE_TIMEOUT_SECONDS": "1",
        "MEDIA_NODE_DOWN_AFTER_FAILURES": "3",
        "MEDIA_NODE_REPLACE_BATCH": "125",
    }


def django_setup():
    os.environ.update(env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def prepare() -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{DB}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env(), check=True)


def pgbench_tps(clients: int, seconds: int) -> float:
    with psycopg.connect(database_url(DB), autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS pgb (id int PRIMARY KEY, v bigint NOT NULL)")
        c.execute(
            "INSERT INTO pgb SELECT g, 0 FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("\\set id random(1, 1000)\nUPDATE pgb SET v = v + 1 WHERE id = :id;\n")
    out = subprocess.run(
        [
            *pgbench_command(),
            "-n",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(seconds),
            "-f",
            script.name,
            DB,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


@contextmanager
def workers(queues: str, count: int = 2, beat: bool = False):
    procs = []
    for i in range(count):
        procs.append(
            subprocess.Popen(
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
                    str(WORKER_PROCESSES),
                    "--queues",
                    queues,
                    "--hostname",
                    f"bench{i}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=ROOT,
                env=env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    if beat:
        procs.append(
            subprocess.Popen(
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
                    str(Path(tempfile.gettempdir()) / "bench-beat"),
                ],
                cwd=ROOT,
                env=env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    from controlplane.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        if len([r for r in replies if "bench" in list(r)[0]]) >= count:
            break
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def reset(nodes: int, capacity: int, rooms: int, size: int = 10, urls=None):
    """Empty the tables, then create the nodes and the rooms (not placed)."""
    from django.db import connection

    from accounts.models import Agent, Ministry
    from media_nodes.models import MediaNode
    from rooms.models import Room

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE media_nodes_allocation, rooms_room_invitees, rooms_room, "
            "media_nodes_medianode CASCADE"
        )
    ministry, _ = Ministry.objects.get_or_create(
        code="bench", defaults={"name": "Banc", "siren": "110044013"}
    )
    owner, _ = Agent.objects.get_or_create(
        email="owner@bench.gouv.fr", defaults={"ministry": ministry}
    )
    created = []
    for i in range(nodes):
        node = MediaNode(
            name=f"node-{i:02d}",
            url=(urls[i] if urls else f"http://127.0.0.1:9/{i}"),
            api_key="benchkey",
            region="paris",
            capacity=capacity,
        )
        node.api_secret = SECRET
        node.save()
        created.append(node)
    Room.objects.bulk_create(
        Room(
            slug=f"b{i:04d}-{secrets.token_hex(3)}"[:16],
            name="r",
            owner=owner,
            ministry=ministry,
            expected_size=size,
        )
        for i in range(rooms)
    )
    return created


def wait_placed(count: int, timeout: float = 300) -> None:
    from media_nodes.models import Allocation

    deadline = time.monotonic() + timeout
    while Allocation.objects.filter(closed_at__isnull=True).count() < count:
        if time.monotonic() > deadline:
            raise SystemExit("allocations did not complete in time")
        time.sleep(0.02)


def place_all(room_ids, timeout: float = 300) -> float:
    """Ask for every room as joins do (media_nodes.queueing.request), at once; seconds
    until all are placed."""
    from media_nodes import queueing

    started = time.perf_counter()
    for pk in room_ids:
        queueing.request(pk)
    wait_placed(len(room_ids), timeout)
    return time.perf_counter() - started


def bench_throughput(rooms: int) -> dict:
    """Two figures: end to end (one producer asking, as joins do, while the workers
    place), and the workers' own rate on requests queued beforehand (first to last
    allocation, from the database's timestamps)."""
    from django.conf import settings
    from django.db.models import Max, Min

    from media_nodes import queueing
    from media_nodes.models import Allocation
    from rooms.models import Room

    reset(nodes=10, capacity=100_000, rooms=rooms)
    ids = list(Room.objects.values_list("pk", flat=True))
    with workers("allocation"):
        end_to_end = place_all(ids)
        reset(nodes=10, capacity=100_000, rooms=rooms)
        ids = list(Room.objects.values_list("pk", flat=True))
        r = queueing.client()
        pipe = r.pipeline(transaction=False)
        for pk in ids:
            pipe.rpush(queueing.PENDING, f"{pk}||bench")
        pipe.execute()
        for slot in range(settings.ALLOCATION_DRAINERS):
            queueing.wake(r, slot)
        wait_placed(rooms)
    span = Allocation.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    return {
        "rooms": rooms,
        "end_to_end_per_second": round(rooms / end_to_end, 1),
        "seconds": round(seconds, 3),
        "per_second": round(rooms / seconds, 1),
    }


def bench_spread(rooms: int) -> dict:
    from media_nodes.models import MediaNode
    from rooms.models import Room

    capacity = int(rooms * 10 / 10 * 1.1)  # 10 nodes filled to about 91 %
    reset(nodes=10, capacity=capacity, rooms=rooms)
    ids = list(Room.objects.values_list("pk", flat=True))
    with workers("allocation"):
        place_all(ids)
    loads = list(MediaNode.objects.values_list("reserved_participants", "capacity"))
    reserved = [r for r, _ in loads]
    mean = sum(reserved) / len(reserved)
    return {
        "rooms": rooms,
        "nodes": len(loads),
        "max_over_mean": round(max(reserved) / mean, 3),
        "min_over_mean": round(min(reserved) / mean, 3),
        "overbooked": sum(1 for r, c in loads if r > c),
    }


def bench_failover(rooms: int) -> dict:
    from devtools.livekit_sim import SimulatedNode
    from media_nodes.models import Allocation, MediaNode
    from rooms.models import Room

    sims = [SimulatedNode(api_key="benchkey", api_secret=SECRET) for _ in range(5)]
    for sim in sims:
        sim.start()
    try:
        nodes = reset(nodes=5, capacity=rooms * 10, rooms=rooms, urls=[s.url for s in sims])
        victim = nodes[0]
        MediaNode.objects.exclude(pk=victim.pk).update(state="cordoned")
        ids = list(Room.objects.values_list("pk", flat=True))
        with workers("allocation,health", beat=True):
            place_all(ids)
            MediaNode.objects.exclude(pk=victim.pk).update(state="active")
            assert Allocation.objects.filter(node=victim, closed_at__isnull=True).count() == rooms
            time.sleep(3)  # a few healthy probes first
            killed = time.time()
            sims[0].die()
            while MediaNode.objects.get(pk=victim.pk).is_up:
                if time.time() - killed > 60:
                    raise SystemExit("the dead node was not detected within 60 s")
                time.sleep(0.05)
            detected = time.time()
            while (
                Allocation.objects.filter(closed_at__isnull=True).exclude(node=victim).count()
                < rooms
            ):
                if time.time() - detected > 120:
                    raise SystemExit("rooms were not re-placed within 120 s")
                time.sleep(0.05)
            replaced = time.time()
        left = Allocation.objects.filter(node=victim, closed_at__isnull=True).count()
    finally:
        for sim in sims:
            sim.stop()
    return {
        "rooms": rooms,
        "detection_s": round(detected - killed, 2),
        "replacement_s": round(replaced - detected, 2),
        "left_on_dead_node": left,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=5000, help="throughput: rooms placed")
    parser.add_argument("--spread-rooms", type=int, default=1000)
    parser.add_argument("--failover-rooms", type=int, default=1000)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    prepare()
    django_setup()
    from controlplane.celery import app

    app.control.purge()
    from media_nodes import queueing

    stale = [queueing.PENDING] + [queueing.SLOT.format(i) for i in range(64)]
    stale += [queueing.INFLIGHT.format(i) for i in range(64)]
    queueing.client().delete(*stale)
    clients = 2 * WORKER_PROCESSES
    tps = pgbench_tps(clients, args.pgbench_seconds)
    print(
        f"pgbench one-row UPDATE, {clients} clients (as many as worker processes): {tps:,.0f} tps"
    )
    best = pgbench_tps(8, args.pgbench_seconds) if clients != 8 else tps
    print(f"pgbench one-row UPDATE, 8 clients: {best:,.0f} tps")
    throughput = bench_throughput(args.rooms)
    ratio = throughput["per_second"] / tps
    ratio_best = throughput["per_second"] / max(tps, best)
    print(
        f"allocations through 2 Celery workers x {WORKER_PROCESSES}: "
        f"{throughput['per_second']:,.0f}/s ({args.rooms} queued rooms placed in "
        f"{throughput['seconds']} s); end to end with one producer sending: "
        f"{throughput['end_to_end_per_second']:,.0f}/s"
    )
    print(
        f"allocations / pgbench: {ratio:.2f} at the same concurrency, "
        f"{ratio_best:.2f} against pgbench's best (target >= 0.25)"
    )
    spread = bench_spread(args.spread_rooms)
    print(
        f"spread of {spread['rooms']} simultaneous starts on {spread['nodes']} nodes: "
        f"max/mean {spread['max_over_mean']} (target <= 1.10), min/mean "
        f"{spread['min_over_mean']}, overbooked nodes {spread['overbooked']} (target 0)"
    )
    figures = {
        "pgbench_tps": tps,
        "pgbench_best_tps": best,
        "throughput": throughput,
        "ratio": ratio,
        "ratio_best": ratio_best,
        "spread": spread,
    }
    if not args.skip_failover:
        failover = bench_failover(args.failover_rooms)
        print(
            f"failover of a node hosting {failover['rooms']} rooms: detected in "
            f"{failover['detection_s']} s (target <= 10), all re-placed "
            f"{failover['replacement_s']} s later (target <= 10), "
            f"{failover['left_on_dead_node']} left on the dead node"
        )
        figures["failover"] = failover
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
