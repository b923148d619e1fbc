"""The embedded PostgreSQL dev tool: started once, reused, stopped by its pid, and
refused with the reason where its socket could not live."""

import subprocess
import sys
from pathlib import Path

import environ
import psutil
import psycopg
import pytest
from django.conf import settings

from devtools import embedded_postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data directory of its own (never var/postgres, which the demo or this run may
    be using), with its server stopped at the end whatever the tests did."""
    directory = tmp_path_factory.mktemp("pg") / "data"
    yield directory
    embedded_postgres.server_stop(data_dir=directory)


def current_database(url: str) -> str:
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT current_database()").fetchone()[0]


def test_start_makes_the_server_and_its_database_and_a_second_start_reuses_it(data_dir):
    """The first start runs initdb and the server; a second start (another process)
    finds it running, reuses it, and only adds the database it asks for."""
    first = embedded_postgres.server_start(data_dir=data_dir, database="demo")
    assert first.started
    assert current_database(first.url) == "demo"
    assert embedded_postgres.running_pid(data_dir) == first.pid

    again = subprocess.run(
        [sys.executable, "-m", "devtools.embedded_postgres", "start"]
        + ["--data", str(data_dir), "--database", "other", "--shell"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert "EMBEDDED_POSTGRES_STARTED=0" in again.stdout.splitlines()
    assert f"already running, reused (pid {first.pid}" in again.stderr
    assert embedded_postgres.running_pid(data_dir) == first.pid
    assert current_database(embedded_postgres.database_url(data_dir, "other")) == "other"


def test_stop_ends_the_postmaster_and_a_new_start_keeps_the_data(data_dir):
    """Stopping ends the postmaster by its pid; the next start finds the data (no initdb,
    the database made before is still there) and says it started the server."""
    running = embedded_postgres.server_start(data_dir=data_dir, database="demo")
    assert embedded_postgres.server_stop(data_dir=data_dir)
    assert not psutil.pid_exists(running.pid) or (
        psutil.Process(running.pid).status() == psutil.STATUS_ZOMBIE
    )
    assert embedded_postgres.running_pid(data_dir) is None
    assert not embedded_postgres.server_stop(data_dir=data_dir)

    restarted = embedded_postgres.server_start(data_dir=data_dir, database="demo")
    assert restarted.started and restarted.pid != running.pid
    with psycopg.connect(embedded_postgres.database_url(data_dir, "postgres")) as connection:
        names = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
    assert "demo" in names


def test_a_data_directory_too_deep_for_a_unix_socket_is_refused_with_the_reason(tmp_path):
    """A socket path over 107 bytes is refused before anything is made, saying so."""
    deep = tmp_path / ("d" * (110 - len(str(tmp_path))))
    with pytest.raises(embedded_postgres.EmbeddedPostgresError, match="at most 107 bytes"):
        embedded_postgres.server_start(data_dir=deep)
    assert not deep.exists()


def test_a_stale_postmaster_pid_file_names_no_running_server(tmp_path):
    """A postmaster.pid left by a crash (its process gone) is not taken for a server."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = finished.stdout.strip()
    (tmp_path / "postmaster.pid").write_text(f"{gone}\n{tmp_path}\n")
    assert embedded_postgres.running_pid(tmp_path) is None


def test_the_demo_default_database_is_the_embedded_server_of_var():
    """With DEBUG on and no DATABASE_URL, the settings name the socket the dev tool's
    server listens on in var/postgres, and its application database."""
    env = environ.Env()
    assert env.db_url_config(settings.DEMO_DATABASE_URL) == env.db_url_config(
        embedded_postgres.database_url(ROOT / "var" / "postgres", "controlplane")
    )
    assert embedded_postgres.DEFAULT_DATA_DIR == ROOT / "var" / "postgres"


def test_no_production_module_imports_the_dev_tool():
    """Only the tests, the benchmarks and devtools itself may import devtools."""
    production = ["controlplane", "accounts", "audit", "console", "licensing"]
    production += ["media_nodes", "rooms", "scim", "usage"]
    found = subprocess.run(
        ["grep", "-rlE", r"^\s*(from|import) devtools", *production],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1 and found.stdout == "", found.stdout + found.stderr
