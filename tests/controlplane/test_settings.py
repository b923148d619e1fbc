"""Production settings refuse demo values; ``check --deploy`` passes on real ones."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.production_env import PRODUCTION_ENV

ROOT = Path(__file__).resolve().parents[2]


def manage(*args, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DEBUG",
            "SECRET_KEY",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "SECURE_SSL_REDIRECT",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "STATICFILES_BACKEND",
            "DJANGO_SETTINGS_MODULE",
        }
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings():
    """``manage.py check --deploy`` reports nothing, even at warning level."""
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr + result.stdout


def test_refuses_to_start_on_the_demo_secret():
    """With DEBUG off, the default secret stops the process with a clear reason."""
    env = dict(PRODUCTION_ENV)
    del env["SECRET_KEY"]
    result = manage("check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY is the demo default" in result.stderr


def test_refuses_to_start_without_database_or_broker():
    """With DEBUG off, the demo's embedded database and eager tasks are refused, each named."""
    env = dict(PRODUCTION_ENV)
    del env["DATABASE_URL"]
    del env["CELERY_BROKER_URL"]
    result = manage("check", **env)
    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr
    assert "CELERY_BROKER_URL is not set" in result.stderr


def test_demo_starts_on_defaults_with_debug_on():
    """The demo needs nothing but DEBUG=1."""
    result = manage("check", DEBUG="1")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("debug", ["0", "1"])
def test_refuses_a_database_other_than_postgresql(debug):
    """PostgreSQL is the only database: another engine stops the process, demo or not,
    instead of running on it."""
    env = dict(PRODUCTION_ENV, DEBUG=debug, DATABASE_URL="mysql://root@127.0.0.1/controlplane")
    result = manage("check", **env)
    assert result.returncode != 0
    assert "DATABASE_URL must name a PostgreSQL database" in result.stderr
