"""Helpers for end-to-end login tests: the RP under the live server, a real dev IdP,
and a man-in-the-middle on the RP's calls to the IdP for the tampering tests."""

import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import urljoin

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from accounts.models import Ministry, MinistrySiret
from accounts.oidc import provider
from tests.factories import MinistryDomainFactory, licence_pool, with_luhn_key

SIRET_A = with_luhn_key("1100440130001")
SIRET_B = with_luhn_key("1300181530001")
SIRET_UNKNOWN = with_luhn_key("2100000060001")


def account(email, given, usual, siret, unit="DSI"):
    return {
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, email)),
        "email": email,
        "given_name": given,
        "usual_name": usual,
        "uid": email.split("@")[0],
        "siret": siret,
        "idp_id": "11111111-2222-3333-4444-555555555555",
        "organizational_unit": unit,
    }


ACCOUNTS = [
    account("jeanne.martin@alpha.gouv.fr", "Jeanne", "Martin", SIRET_A, "Bureau des systèmes"),
    account("paul.durand@bravo.gouv.fr", "Paul", "Durand", SIRET_B),
    account("cheffe@alpha.gouv.fr", "Aïcha", "Benali", SIRET_A),
    account("someone@inconnu.gouv.fr", "Sam", "Inconnu", SIRET_UNKNOWN),
    # Claims that disagree: an address of Alpha's domain, the SIRET of Bravo.
    account("tom.transfuge@alpha.gouv.fr", "Tom", "Transfuge", SIRET_B),
    # Bravo's SIRET, an address in a domain no ministry has declared.
    account("lou.agence@agence-bravo.fr", "Lou", "Agence", SIRET_B),
]
SUB = {a["email"]: a["sub"] for a in ACCOUNTS}


def make_ministries():
    """Alpha (no creation at first login) and Bravo (creation allowed)."""
    alpha = Ministry.objects.create(
        code="alpha", name="Ministère Alpha", siren=SIRET_A[:9], state="rolling_out"
    )
    bravo = Ministry.objects.create(
        code="bravo",
        name="Ministère Bravo",
        siren=SIRET_B[:9],
        state="rolling_out",
        jit_provisioning=True,
    )
    for ministry, domain, siret in (
        (alpha, "alpha.gouv.fr", SIRET_A),
        (bravo, "bravo.gouv.fr", SIRET_B),
    ):
        MinistryDomainFactory(ministry=ministry, domain=domain)
        MinistrySiret.objects.create(ministry=ministry, siret=siret)
        licence_pool(ministry, seats=100)
    return alpha, bravo


@dataclass
class Interceptor:
    """Rewrites the IdP's answers to the RP (the back channel), as an attacker could."""

    rules: list = field(default_factory=list)
    # Every call the RP made to the IdP, as (method, url).
    calls: list = field(default_factory=list)
    attacker_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def request(self, real, method, url, **kwargs):
        self.calls.append((method, url))
        for matches, action in self.rules:
            if matches(method, url):
                return action(real, method, url, **kwargs)
        return real(method, url, **kwargs)

    def on(self, matches, action):
        self.rules.append((matches, action))

    def jwks_fetches(self) -> int:
        """How many times the RP downloaded the JWKS."""
        return sum(1 for _, url in self.calls if url.endswith("/jwks"))

    def attacker_jwk(self) -> dict:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.attacker_key.public_key(), as_dict=True)
        return {**jwk, "kid": "attacker", "use": "sig", "alg": "RS256"}

    def sign(self, claims: dict) -> str:
        return jwt.encode(claims, self.attacker_key, algorithm="RS256", headers={"kid": "attacker"})

    def trust_attacker_key(self):
        """Slip the attacker's key into the JWKS the RP downloads."""

        def add_key(real, method, url, **kwargs):
            response = real(method, url, **kwargs)
            body = response.json()
            body["keys"].append(self.attacker_jwk())
            return fake_response(response, json_body=body)

        self.on(lambda m, u: u.endswith("/jwks"), add_key)

    def rewrite_tokens(self, change):
        """Apply ``change(tokens_dict)`` to the token endpoint's JSON answer."""

        def rewrite(real, method, url, **kwargs):
            response = real(method, url, **kwargs)
            body = response.json()
            if response.status_code == 200:
                change(body)
            return fake_response(response, json_body=body)

        self.on(lambda m, u: m == "POST" and u.endswith("/token"), rewrite)

    def rewrite_userinfo(self, change):
        """Replace the userinfo body with ``change(original_text)``."""

        def rewrite(real, method, url, **kwargs):
            response = real(method, url, **kwargs)
            return fake_response(response, text=change(response.text))

        self.on(lambda m, u: u.endswith("/userinfo"), rewrite)


def fake_response(original, *, json_body=None, text=None):
    import json

    response = requests.Response()
    response.status_code = original.status_code
    response.headers = original.headers.copy()
    response.url = original.url
    response.encoding = "utf-8"
    payload = json.dumps(json_body) if json_body is not None else text
    response._content = payload.encode()
    return response


def unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def reforge(interceptor: Interceptor, change):
    """Re-sign the ID token with the attacker's key after ``change(claims)``."""

    def rewrite(body):
        claims = unverified(body["id_token"])
        change(claims)
        body["id_token"] = interceptor.sign(claims)

    return rewrite


class Browser:
    """A plain HTTP client following redirects across the RP and the IdP, as a browser."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()

    def get(self, path, **kwargs):
        return self.http.get(urljoin(self.base, path), timeout=20, **kwargs)

    def login(self, email: str):
        """Start at the RP's ProConnect button with login_hint; return the last response."""
        return self.get(f"/oidc/authenticate/?login_hint={email}")

    def post_form(self, path, data=None, **kwargs):
        self.get("/console/connexion/")  # sets the CSRF cookie
        token = self.http.cookies.get("csrftoken")
        data = {"csrfmiddlewaretoken": token, **(data or {})}
        return self.http.post(
            urljoin(self.base, path),
            data=data,
            timeout=20,
            headers={"Referer": urljoin(self.base, path)},
            **kwargs,
        )

    def logged_in(self) -> bool:
        response = self.get("/console/", allow_redirects=False)
        return response.status_code == 200

    def confirm_idp_logout(self, page):
        """Submit the IdP's "log out?" form, as a person clicking yes."""
        action = re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1)
        xsrf = re.search(r'name="xsrf" value="([^"]+)"', page.text).group(1)
        return self.http.post(
            urljoin(page.url, action), data={"xsrf": xsrf, "logout": "yes"}, timeout=20
        )


def reset_provider_cache():
    """Forget the IdP's metadata and keys cached by the RP."""
    provider.provider_cache_clear()
