"""Redis over TLS (``rediss://``, as a managed Redis is reached in production): the
broker, the result backend and the cache (sessions) all verify the server's
certificate. Against a redis-server of the test's own with TLS on, and a
certificate authority made for it: connections work with that authority, and are
refused with any other (kombu's own default, CERT_NONE, would have connected)."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
import tempfile

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.reliability.processes import REDIS_SERVER, free_port, start_logged, stop_logged, wait_for
from tests.settings import REDIS_AVAILABLE
from tests.workers import ROOT, output

pytestmark = pytest.mark.skipif(not REDIS_AVAILABLE, reason="needs redis-server")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _authority(common: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_certificate(ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("redis test server"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(path, *, cert=None, key=None):
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return str(path)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """A redis-server speaking only TLS, its authority's file and another's."""
    folder = tmp_path_factory.mktemp("redis-tls")
    ca_key, ca_cert = _authority("controlplane test CA")
    key, cert = _server_certificate(ca_key, ca_cert)
    _, other_cert = _authority("someone else's CA")
    files = {
        "ca": _write(folder / "ca.pem", cert=ca_cert),
        "other": _write(folder / "other.pem", cert=other_cert),
        "cert": _write(folder / "server.pem", cert=cert),
        "key": _write(folder / "server.key", key=key),
    }
    port = free_port()
    command = [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    command += ["--tls-cert-file", files["cert"], "--tls-key-file", files["key"]]
    command += ["--tls-ca-cert-file", files["ca"], "--tls-auth-clients", "no"]
    command += ["--save", "", "--appendonly", "no", "--dir", tempfile.gettempdir()]
    process = start_logged(command)
    client = redis.Redis(
        host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=files["ca"], socket_timeout=1
    )

    def answers():
        try:
            return client.ping()
        except redis.RedisError:
            return False

    if not wait_for(answers, timeout=15, every=0.05):
        pytest.fail(f"redis-server with TLS did not start: {output(process)}")
    yield port, files
    stop_logged(process)


# Run in a process of its own: settings are read from the environment at start.
PROBE = """
import django
django.setup()
from django.core.cache import cache
from controlplane.celery import app
# One attempt each: a refused certificate is not worth the backend's 20 retries.
app.conf.result_backend_transport_options = {"retry_policy": {"max_retries": 0}}
results = {}
try:
    cache.set("tls-probe", "yes", 30)
    results["cache"] = cache.get("tls-probe")
except Exception as error:
    results["cache"] = type(error).__name__ + ": " + str(error)
try:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        with conn.SimpleQueue("tls-probe") as queue:
            queue.put({"probe": "yes"})
            results["broker"] = queue.get(timeout=5).payload["probe"]
except Exception as error:
    results["broker"] = type(error).__name__ + ": " + str(error)
try:
    app.backend.set("tls-probe-result", "yes")
    results["backend"] = app.backend.get("tls-probe-result").decode()
except Exception as error:
    results["backend"] = type(error).__name__ + ": " + str(error)
print(results)
"""


def probe(port: int, **env) -> tuple[dict, str]:
    environment = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": "a-production-like-secret-for-the-tls-probe-" + "z" * 20,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
        "ALLOWED_HOSTS": "visio.numerique.gouv.fr",
        "CELERY_BROKER_URL": f"rediss://127.0.0.1:{port}/0",
        "CACHE_URL": f"rediss://127.0.0.1:{port}/1",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return eval(result.stdout.strip().splitlines()[-1]), result.stderr  # noqa: S307 - our own dict


def test_broker_backend_and_cache_work_over_tls_with_the_servers_authority(tls_redis):
    port, files = tls_redis
    results, errors = probe(port, REDIS_TLS_CA_FILE=files["ca"])
    assert results == {"cache": "yes", "broker": "yes", "backend": "yes"}
    assert "insecure" not in errors


@pytest.mark.parametrize("authority", ["other", None], ids=["another-ca", "system-cas"])
def test_a_server_not_signed_by_a_trusted_authority_is_refused(tls_redis, authority):
    """With another authority, or the system's (which never signed this server), every
    connection fails on the certificate and nothing is sent."""
    port, files = tls_redis
    trusted = [
        redis.Redis(host="127.0.0.1", port=port, db=db, ssl=True, ssl_ca_certs=files["ca"])
        for db in (0, 1)
    ]
    trusted[0].flushall()
    env = {"REDIS_TLS_CA_FILE": files[authority]} if authority else {}
    results, _ = probe(port, **env)
    for part in ("cache", "broker", "backend"):
        assert "certificate verify failed" in results[part], (part, results[part])
    assert [client.dbsize() for client in trusted] == [0, 0]
