"""Settings for the test suite: the project's settings on real services.

The environment is completed before ``controlplane.settings`` is read. The database is
PostgreSQL, always: ``DATABASE_URL`` when set, else the server on 127.0.0.1:5432 when
it answers, else the embedded PostgreSQL of ``devtools/embedded_postgres.py`` (data in
``var/postgres``, the demo's), started once for the run and stopped at its end if the
run started it. Its URL goes into the environment, which the workers, web servers and
benchmarks the tests start inherit. A database that cannot be had stops the run. Redis
is probed: when it does not answer, tests that need it are skipped with a loud reason,
except under ``CI=true`` where a missing Redis fails the run.
"""

import atexit
import os
import secrets
import socket
import sys
from urllib.parse import urlparse

from devtools import embedded_postgres

LOCAL_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/controlplane"

os.environ.setdefault("SECRET_KEY", "tests-" + secrets.token_urlsafe(48))
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# The live server speaks plain HTTP: cookies must not be Secure-only there.
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
os.environ.setdefault("CSRF_COOKIE_SECURE", "0")
os.environ.setdefault(
    "STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage"
)
os.environ["DEBUG"] = "0"


def _answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def _embedded_postgres_url() -> str:
    """Start (or reuse) the embedded server; stop it when this process ends, if it
    started it. Refuse to go on without it: there is no other database to fall back on."""
    try:
        server = embedded_postgres.server_start()
    except embedded_postgres.EmbeddedPostgresError as exc:
        raise SystemExit(
            "No PostgreSQL for the tests: DATABASE_URL is not set, nothing answers on "
            f"127.0.0.1:5432, and the embedded PostgreSQL did not start: {exc}"
        ) from exc
    print(
        "\n!!! PostgreSQL does not answer on 127.0.0.1:5432: the suite runs on the embedded "
        f"PostgreSQL in {embedded_postgres.DEFAULT_DATA_DIR} !!!\n",
        file=sys.stderr,
    )
    if server.started:
        atexit.register(_embedded_postgres_stop, owner=os.getpid())
    return server.url


def _embedded_postgres_stop(*, owner: int) -> None:
    """At the end of the run: stop the server this process started (never from a fork)."""
    if os.getpid() == owner:
        embedded_postgres.server_stop()


IN_CI = os.environ.get("CI", "").lower() == "true"
# Where the suite's database comes from, said at the end of the run (tests/conftest.py).
if "DATABASE_URL" in os.environ:
    TEST_DATABASE_SOURCE = "the one DATABASE_URL names"
elif _answers(LOCAL_POSTGRES_URL, 5432):
    TEST_DATABASE_SOURCE = "the PostgreSQL on 127.0.0.1:5432"
    os.environ["DATABASE_URL"] = LOCAL_POSTGRES_URL
else:
    TEST_DATABASE_SOURCE = (
        f"the embedded PostgreSQL in {embedded_postgres.DEFAULT_DATA_DIR} "
        "(nothing answers on 127.0.0.1:5432)"
    )
    os.environ["DATABASE_URL"] = _embedded_postgres_url()
REDIS_AVAILABLE = _answers(os.environ["CELERY_BROKER_URL"], 6379)
if not REDIS_AVAILABLE:
    if IN_CI:
        raise SystemExit(f"CI: Redis does not answer at {os.environ['CELERY_BROKER_URL']}")
    print(
        "\n!!! Redis does not answer: integration tests that need it are SKIPPED !!!\n",
        file=sys.stderr,
    )

from controlplane.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Static files come from the apps' folders (no collectstatic before the suite).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
WHITENOISE_USE_FINDERS = False  # scanning 70k files per test client is slow
