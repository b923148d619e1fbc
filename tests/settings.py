"""Settings for the test suite: the project's settings on the machine's real services.

The environment is completed before ``controlplane.settings`` is read. PostgreSQL
and Redis are probed: when one does not answer, tests that need it are skipped
with a loud reason, except under ``CI=true`` where a missing service fails the run.
"""

import os
import secrets
import socket
import sys
from urllib.parse import urlparse

os.environ.setdefault("SECRET_KEY", "tests-" + secrets.token_urlsafe(48))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")
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


IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_AVAILABLE = _answers(os.environ["DATABASE_URL"], 5432)
REDIS_AVAILABLE = _answers(os.environ["CELERY_BROKER_URL"], 6379)
if not POSTGRES_AVAILABLE:
    if IN_CI:
        raise SystemExit(f"CI: PostgreSQL does not answer at {os.environ['DATABASE_URL']}")
    print(
        "\n!!! PostgreSQL does not answer: the suite runs on SQLite and PostgreSQL-only "
        "tests are SKIPPED !!!\n",
        file=sys.stderr,
    )
    os.environ["DATABASE_URL"] = "sqlite:////tmp/controlplane-tests.sqlite3"
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
