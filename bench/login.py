"""Benchmark: complete ProConnect logins against the local dev IdP.

Starts, on this machine, the service as in production (gunicorn sync workers,
DEBUG off, PostgreSQL, sessions and broker in Redis) and the dev identity
provider, then runs N complete logins (authorization request, IdP login,
callback, token, userinfo, session) at a given concurrency. Prints logins
per second, latency percentiles and how each login's time splits between this
service and the provider.

The split: time spent in requests to the IdP (browser hops) plus the time the
service itself waited for the IdP (its ``Server-Timing: idp`` header) is the
provider's share; the rest of the service's hops is the service's own share.

    .venv/bin/python bench/login.py --logins 200 --concurrency 8
"""

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
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

SIRET = "11004401300016"
DOMAIN = "bench.gouv.fr"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accounts(n: int) -> list[dict]:
    return [
        {
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench{i}")),
            "email": f"agent{i}@{DOMAIN}",
            "given_name": "Agent",
            "usual_name": f"Numéro {i}",
            "uid": f"bench{i}",
            "siret": SIRET,
            "idp_id": "bench-idp",
            "organizational_unit": "Banc d'essai",
        }
        for i in range(n)
    ]


def prepare_database(admin_url: str, name: str, env: dict, agents: int) -> None:
    """A fresh database with one ministry and ``agents`` agents already bound to their
    ProConnect sub and last seen yesterday: a Monday-morning login."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], **run)
    code = (
        "from accounts.models import Ministry, MinistryDomain, MinistrySiret\n"
        f"m = Ministry.objects.create(code='bench', name='Banc', siren='{SIRET[:9]}',"
        " state='rolling_out', jit_provisioning=True)\n"
        f"MinistryDomain.objects.create(ministry=m, domain='{DOMAIN}')\n"
        f"MinistrySiret.objects.create(ministry=m, siret='{SIRET}')\n"
        "import uuid, datetime\n"
        "from django.utils import timezone\n"
        "from accounts.models import Agent\n"
        "yesterday = timezone.now() - datetime.timedelta(days=1)\n"
        "Agent.objects.bulk_create([Agent(email=f'agent{i}@" + DOMAIN + "', ministry=m,"
        " sub=str(uuid.uuid5(uuid.NAMESPACE_URL, f'bench{i}')), given_name='Agent',"
        " usual_name=f'Numéro {i}', organizational_unit=\"Banc d'essai\", password='!',"
        f" last_login=yesterday) for i in range({agents})])\n"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], **run)


def one_login(base: str, idp_root: str, email: str) -> dict:
    """Follow every redirect by hand, timing each hop by the host it went to."""
    http = requests.Session()
    url = f"{base}/oidc/authenticate/?login_hint={email}"
    service = provider = 0.0
    started = time.perf_counter()
    for _ in range(15):
        hop = time.perf_counter()
        response = http.get(url, allow_redirects=False, timeout=30)
        elapsed = time.perf_counter() - hop
        if url.startswith(idp_root):
            provider += elapsed
        else:
            upstream = _server_timing(response, "idp")
            provider += upstream
            service += elapsed - upstream
        location = response.headers.get("Location")
        if response.status_code not in (301, 302, 303) or not location:
            raise RuntimeError(f"login stopped at {url}: {response.status_code}")
        url = urljoin(url, location)
        if url == f"{base}/console/":
            break
    else:
        raise RuntimeError("too many redirects")
    if "sessionid" not in http.cookies:
        raise RuntimeError("no session after the callback")
    return {"total": time.perf_counter() - started, "service": service, "provider": provider}


def _server_timing(response, name: str) -> float:
    for part in response.headers.get("Server-Timing", "").split(","):
        label, _, value = part.strip().partition(";dur=")
        if label == name and value:
            return float(value) / 1000
    return 0.0


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--admin-db", default=database_url("postgres"))
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db_name = "bench_login"
    with running_dev_idp(
        redirect_uri=f"{base}/oidc/callback/",
        post_logout_redirect_uri=f"{base}/oidc/logout/callback/",
        accounts=accounts(args.logins + args.workers),
    ) as idp:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "DATABASE_URL": database_url(db_name),
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
            "CACHE_URL": "redis://127.0.0.1:6379/13",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
            "OIDC_OP_DISCOVERY_URL": f"{idp.issuer}/.well-known/openid-configuration",
            "OIDC_RP_CLIENT_ID": idp.client_id,
            "OIDC_RP_CLIENT_SECRET": idp.client_secret,
            "LOG_LEVEL": "WARNING",
        }
        prepare_database(args.admin_db, db_name, env, args.logins + args.workers)
        server = subprocess.Popen(
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
            cwd=ROOT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.2)
            # Every login is a different agent. Warm-up: one login per worker (imports,
            # JWKS and discovery caches), with agents of its own.
            for i in range(args.logins, args.logins + args.workers):
                one_login(base, idp.root, f"agent{i}@{DOMAIN}")
            emails = [f"agent{i}@{DOMAIN}" for i in range(args.logins)]
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(lambda e: one_login(base, idp.root, e), emails))
            wall = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=20)
    totals = [r["total"] for r in results]
    service = sum(r["service"] for r in results)
    provider = sum(r["provider"] for r in results)
    share = service / (service + provider)
    print(
        f"logins: {len(results)} at concurrency {args.concurrency}, "
        f"gunicorn workers: {args.workers}"
    )
    print(f"logins per second: {len(results) / wall:.1f}")
    print(
        f"latency p50 {percentile(totals, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(totals, 0.95) * 1000:.0f} ms, "
        f"p99 {percentile(totals, 0.99) * 1000:.0f} ms, "
        f"mean {statistics.mean(totals) * 1000:.0f} ms"
    )
    print(
        f"time per login: service {service / len(results) * 1000:.1f} ms, "
        f"provider {provider / len(results) * 1000:.1f} ms"
    )
    print(
        f"service share of end-to-end: {share:.3f} (target <= 0.500: "
        f"{'met' if share <= 0.5 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
