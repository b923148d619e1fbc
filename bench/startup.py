"""Benchmark: how long the project takes to start, as a newcomer and a developer see it.

Times, each over ``--runs`` runs (wall clock, this machine):

- ``manage.py check`` (what every operator command pays before doing anything);
- ``pytest --collect-only`` (what every test run pays before its first test);
- each of the two both without bytecode caches (``PYTHONDONTWRITEBYTECODE=1``, as
  some machines export it: every module compiled again, every test module and
  pytest plugin rewritten again) and with them (as ``make`` runs, which unexports
  it; the caches warmed by the first run);
- ``make run`` until ``/healthz`` answers: the first one on an empty ``var/``
  (a new demo database: migrations and seed), then a second one on the ``var/``
  the first left. The virtualenv and Node are taken as installed (their download
  time is the network's, not the project's).

    .venv/bin/python bench/startup.py --runs 3
    .venv/bin/python bench/startup.py --only check,collect

It stops every ``make run`` it starts (the whole process group) and restores
nothing else: ``var/`` is left as the last run made it.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
NO_CACHE = ["-p", "no:cacheprovider"]


def timed(command: list[str], env: dict | None = None, *, bytecode: bool = True) -> float:
    """Wall time of a command that must succeed."""
    environment = {**os.environ, **(env or {})}
    if bytecode:
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    started = time.perf_counter()
    subprocess.run(
        command,
        cwd=ROOT,
        env=environment,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
            return response.status == 200
    except OSError:
        return False


def make_run_until_answer(port: int, timeout: float = 600) -> float:
    """Seconds from ``make run`` to the first 200 of ``/healthz``; stops the demo."""
    log = open(ROOT / "var" / f"startup-bench-{port}.log", "wb")  # noqa: SIM115
    started = time.perf_counter()
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise SystemExit(f"make run exited with {process.returncode}: see {log.name}")
            if answers(f"http://127.0.0.1:{port}/healthz"):
                return time.perf_counter() - started
            time.sleep(0.1)
        raise SystemExit(f"make run did not answer within {timeout} s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def summary(name: str, values: list[float]) -> None:
    shown = " / ".join(f"{v:.2f}" for v in values)
    print(f"{name:<44} median {statistics.median(values):6.2f} s   ({shown})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="check,collect,run", help="comma-separated parts")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    check = [str(PYTHON), "manage.py", "check"]
    collect = [str(PYTHON), "-m", "pytest", "--collect-only", "-q", *NO_CACHE]
    for bytecode, how in ((False, "no bytecode cache"), (True, "bytecode cache")):
        if "check" in parts:
            timed(check, {"DEBUG": "1"}, bytecode=bytecode)  # warms the caches, if any
            summary(
                f"manage.py check ({how})",
                [timed(check, {"DEBUG": "1"}, bytecode=bytecode) for _ in range(args.runs)],
            )
        if "collect" in parts:
            timed(collect, bytecode=bytecode)
            summary(
                f"pytest --collect-only ({how})",
                [timed(collect, bytecode=bytecode) for _ in range(args.runs)],
            )
    if "run" in parts:
        first, second = [], []
        for _ in range(args.runs):
            shutil.rmtree(ROOT / "var", ignore_errors=True)
            (ROOT / "var").mkdir()
            first.append(make_run_until_answer(args.port))
            second.append(make_run_until_answer(args.port))
        summary("make run, new var/ (first)", first)
        summary("make run, var/ kept (second)", second)


if __name__ == "__main__":
    sys.exit(main())
