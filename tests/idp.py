"""Start the development identity provider (deploy/dev-idp) for a test session.

``running_dev_idp`` runs ``server.mjs`` on a free loopback port with the clients
and accounts a test module needs, and stops it afterwards.
"""

import contextlib
import json
import queue
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
import requests

IDP_DIR = Path(__file__).resolve().parent.parent / "deploy" / "dev-idp"
NODE = IDP_DIR / "node_modules" / ".bin" / "node"
START_TIMEOUT = 30


@dataclass
class DevIdp:
    """A running dev IdP and the one client registered with it."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    post_logout_redirect_uri: str
    process: subprocess.Popen | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the provider now (a fault test): its port refuses connections."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    @property
    def root(self) -> str:
        return self.issuer.removesuffix("/api/v2")

    def metadata(self) -> dict:
        url = f"{self.issuer}/.well-known/openid-configuration"
        return requests.get(url, timeout=5).json()

    def jwks(self) -> jwt.PyJWKSet:
        return jwt.PyJWKSet.from_dict(requests.get(self.metadata()["jwks_uri"], timeout=5).json())

    def rotate_keys(self, drop_old: bool = False, same_kid: bool = False) -> list[str]:
        """Put a new signing key first in the JWKS; return the kids, newest first.

        ``same_kid``: the new key replaces the current one under its ``kid``."""
        params = {"drop_old": "1"} if drop_old else {}
        if same_kid:
            params = {"same_kid": "1"}
        response = requests.post(f"{self.root}/_dev/rotate-keys", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["kids"]


def _ensure_node_deps() -> None:
    if not NODE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install deploy/dev-idp's Node dependencies")
        subprocess.run([npm, "ci", "--prefix", str(IDP_DIR)], check=True)


@contextlib.contextmanager
def running_dev_idp(
    *,
    redirect_uri: str,
    post_logout_redirect_uri: str,
    accounts: list[dict] | None = None,
    signed_userinfo: bool = True,
):
    """Run deploy/dev-idp/server.mjs on a free port with one client; yield a DevIdp."""
    _ensure_node_deps()
    client = {
        "client_id": "visio-test",
        "client_secret": secrets.token_urlsafe(32),
        "redirect_uris": [redirect_uri],
        "post_logout_redirect_uris": [post_logout_redirect_uri],
    }
    if signed_userinfo:
        client["userinfo_signed_response_alg"] = "RS256"
    with tempfile.TemporaryDirectory() as tmp:
        config = {"port": 0, "host": "127.0.0.1", "clients": [client]}
        if accounts is not None:
            (Path(tmp) / "accounts.json").write_text(json.dumps(accounts))
            config["accounts_file"] = str(Path(tmp) / "accounts.json")
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        config = Path(tmp) / "config.json"
        stderr = open(Path(tmp) / "stderr.log", "w+")  # noqa: SIM115
        process = subprocess.Popen(
            [str(NODE), str(IDP_DIR / "server.mjs"), str(config)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(line) for line in process.stdout], daemon=True
        ).start()
        issuer = None
        deadline = time.monotonic() + START_TIMEOUT
        while issuer is None and time.monotonic() < deadline and process.poll() is None:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line.startswith("READY "):
                issuer = line.split()[1]
        try:
            if issuer is None:
                stderr.seek(0)
                pytest.fail(f"dev IdP did not start within {START_TIMEOUT}s:\n{stderr.read()}")
            yield DevIdp(
                issuer=issuer,
                client_id=client["client_id"],
                client_secret=client["client_secret"],
                redirect_uri=client["redirect_uris"][0],
                post_logout_redirect_uri=client["post_logout_redirect_uris"][0],
                process=process,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            stderr.close()
