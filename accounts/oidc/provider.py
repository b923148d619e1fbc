"""What this service knows of the identity provider: its metadata and its keys.

Metadata comes from the discovery document and is cached; signing keys come from
the JWKS and are cached too, refetched once when a token names an unknown ``kid``
(so the provider can rotate keys) but never more than once every few seconds.
Every check a token must pass is here, with a precise reason when it fails.

Whether the provider answers is known from every call made to it; when it has
been silent for ``OIDC_PROVIDER_CHECK_SECONDS``, ``provider_check`` asks again
before an agent is sent there, so that an agent is not redirected to a provider that
is down.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from dataclasses import dataclass, field

import jwt
import requests
from django.conf import settings

from accounts.login import LoginRefused

ALLOWED_ALGORITHMS = ("RS256", "ES256")
# ProConnect's assurance levels, weakest first; anything else is below eidas1.
ACR_LEVELS = ("eidas1", "eidas2", "eidas3")
JWKS_MIN_REFETCH_SECONDS = 5.0


@dataclass
class _ProviderCache:
    metadata: dict | None = None
    metadata_at: float = 0.0
    # When the provider last answered a call (not with a 5xx); 0 after a failure.
    answered_at: float = 0.0
    keys: dict = field(default_factory=dict)
    # When each unknown kid last made us refetch the JWKS (one refetch per kid per window).
    misses: dict = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


_caches: dict[str, _ProviderCache] = {}
_caches_lock = threading.Lock()


def _cache() -> _ProviderCache:
    url = settings.OIDC_OP_DISCOVERY_URL
    with _caches_lock:
        return _caches.setdefault(url, _ProviderCache())


# The connection pool of every call to the provider. Public: the tests intercept the
# provider's traffic by wrapping its ``request``.
session = requests.Session()
session.trust_env = False  # explicit proxy only (settings.OIDC_PROXY)
_timing = threading.local()


def provider_seconds() -> float:
    """Seconds this thread spent waiting for the provider since the last reset."""
    return getattr(_timing, "seconds", 0.0)


def provider_timer_reset() -> None:
    _timing.seconds = 0.0


class ProviderUnavailable(requests.RequestException):
    """The provider answered, but as a provider in trouble does (5xx, 429, not JSON)."""


def provider_unavailable_if(response: requests.Response) -> None:
    """Raise ``ProviderUnavailable`` for an answer that says "try again later"."""
    if response.status_code >= 500 or response.status_code == 429:
        raise ProviderUnavailable(f"HTTP {response.status_code}", response=response)


class _TimedSession:
    """Every call to the provider goes through here, so its share of a login is known,
    and so is whether it answers."""

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        started = time.perf_counter()
        if settings.OIDC_PROXY:
            kwargs.setdefault(
                "proxies", {"http": settings.OIDC_PROXY, "https": settings.OIDC_PROXY}
            )
        answered = False
        try:
            response = session.request(method, url, **kwargs)
            answered = response.status_code < 500
            return response
        finally:
            _timing.seconds = provider_seconds() + time.perf_counter() - started
            _cache().answered_at = time.monotonic() if answered else 0.0

    def get(self, url: str, **kwargs) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> requests.Response:
        return self.request("POST", url, **kwargs)


_timed = _TimedSession()


def http() -> _TimedSession:
    """The HTTP client for every call to the provider."""
    return _timed


def _metadata_fetch(cache: _ProviderCache) -> dict:
    response = http().get(settings.OIDC_OP_DISCOVERY_URL, timeout=settings.OIDC_TIMEOUT)
    response.raise_for_status()
    metadata = response.json()
    if not isinstance(metadata, dict):
        raise LoginRefused("provider_misconfigured", "discovery is not a JSON object")
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(metadata.get(key), str):
            raise LoginRefused("provider_misconfigured", f"discovery lacks {key}")
    cache.metadata, cache.metadata_at = metadata, time.monotonic()
    return metadata


def provider_metadata() -> dict:
    """The discovery document, cached for ``OIDC_DISCOVERY_TTL_SECONDS``."""
    cache = _cache()
    with cache.lock:
        fresh = time.monotonic() - cache.metadata_at < settings.OIDC_DISCOVERY_TTL_SECONDS
        if cache.metadata is not None and fresh:
            return cache.metadata
        return _metadata_fetch(cache)


def provider_check() -> None:
    """Make sure the provider answers before an agent is sent to it.

    Free while logins flow (each call to the provider counts as an answer); after
    ``OIDC_PROVIDER_CHECK_SECONDS`` of silence, or after a failed call, the discovery
    document is fetched again. Raises what ``provider_metadata`` raises.
    """
    cache = _cache()
    if time.monotonic() - cache.answered_at < settings.OIDC_PROVIDER_CHECK_SECONDS:
        return
    with cache.lock:
        if time.monotonic() - cache.answered_at < settings.OIDC_PROVIDER_CHECK_SECONDS:
            return  # another thread has just checked
        _metadata_fetch(cache)


def _fetch_keys(cache: _ProviderCache) -> None:
    response = http().get(provider_metadata()["jwks_uri"], timeout=settings.OIDC_TIMEOUT)
    response.raise_for_status()
    body = response.json()
    keys = {}
    for jwk in body.get("keys", []) if isinstance(body, dict) else []:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or "kid" not in jwk:
            continue
        try:
            keys[jwk["kid"]] = jwt.PyJWK(jwk)
        except jwt.PyJWTError:
            continue  # a key of a type we do not use
    cache.keys = keys


def signing_key(kid: str | None) -> jwt.PyJWK:
    """The provider's key ``kid``, refetching the JWKS once if it is not known yet."""
    cache = _cache()
    with cache.lock:
        if kid in cache.keys:
            return cache.keys[kid]
        now = time.monotonic()
        if not cache.keys or now - cache.misses.get(kid, -JWKS_MIN_REFETCH_SECONDS) >= (
            JWKS_MIN_REFETCH_SECONDS
        ):
            cache.misses[kid] = now
            if len(cache.misses) > 100:  # forget old misses; the window is short anyway
                cache.misses = {kid: now}
            _fetch_keys(cache)
        if kid in cache.keys:
            return cache.keys[kid]
    raise LoginRefused("unknown_key", f"no key {kid!r} in the provider's JWKS")


def acr_satisfies(acr: str | None, minimum: str) -> bool:
    """Whether ``acr`` (eidas1, eidas2, eidas3, optionally with -mfa) reaches ``minimum``."""
    if not acr:
        return False
    base = acr.removesuffix("-mfa")
    if base not in ACR_LEVELS:
        return False
    return ACR_LEVELS.index(base) >= ACR_LEVELS.index(minimum)


def verify_signed_jwt(token: str, *, purpose: str, require: tuple[str, ...]) -> dict:
    """Check a JWT from the provider: allowed algorithm, signature, ``iss``, ``aud``, expiry."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise LoginRefused("invalid_token", f"{purpose} is not a signed JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise LoginRefused("invalid_token", f"{purpose} header unreadable") from exc
    algorithm = header.get("alg")
    if algorithm not in ALLOWED_ALGORITHMS:
        raise LoginRefused("algorithm_refused", f"{purpose} signed with {algorithm!r}")
    key = signing_key(header.get("kid"))
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=settings.OIDC_RP_CLIENT_ID,
            issuer=provider_metadata()["issuer"],
            leeway=settings.OIDC_CLOCK_SKEW_SECONDS,
            options={"require": list(require), "strict_aud": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise LoginRefused("token_expired", purpose) from exc
    except jwt.InvalidAudienceError as exc:
        raise LoginRefused("wrong_audience", purpose) from exc
    except jwt.InvalidIssuerError as exc:
        raise LoginRefused("wrong_issuer", purpose) from exc
    except jwt.InvalidSignatureError as exc:
        raise LoginRefused("bad_signature", purpose) from exc
    except jwt.PyJWTError as exc:
        raise LoginRefused("invalid_token", f"{purpose}: {type(exc).__name__}") from exc


def verify_id_token(id_token: str, *, nonce: str | None) -> dict:
    """All of OpenID Connect Core 3.1.3.7 that applies, plus ProConnect's minimum ``acr``."""
    claims = verify_signed_jwt(
        id_token, purpose="ID token", require=("iss", "aud", "exp", "iat", "sub")
    )
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != settings.OIDC_RP_CLIENT_ID:
        raise LoginRefused("wrong_audience", "several audiences and azp is not this client")
    if settings.OIDC_USE_NONCE and not (
        nonce
        and isinstance(claims.get("nonce"), str)
        and hmac.compare_digest(claims["nonce"], nonce)
    ):
        raise LoginRefused("nonce_mismatch", "ID token nonce differs from the one sent")
    if not acr_satisfies(claims.get("acr"), settings.OIDC_MIN_ACR):
        raise LoginRefused("acr_too_low", f"acr {claims.get('acr')!r}", claims)
    return claims


def fetch_userinfo(access_token: str, *, id_token_claims: dict) -> dict:
    """Userinfo as a signed JWT (checked like the ID token) or JSON; same ``sub`` required."""
    response = http().get(
        provider_metadata()["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=settings.OIDC_TIMEOUT,
    )
    response.raise_for_status()
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    if content_type == "application/jwt":
        claims = verify_signed_jwt(response.text.strip(), purpose="userinfo", require=("sub",))
    elif content_type == "application/json" and settings.OIDC_USERINFO_ACCEPT_JSON:
        try:
            claims = response.json()
        except json.JSONDecodeError as exc:
            raise LoginRefused("invalid_userinfo", "userinfo is not JSON") from exc
    else:
        raise LoginRefused("invalid_userinfo", f"userinfo served as {content_type!r}")
    if not isinstance(claims, dict) or claims.get("sub") != id_token_claims.get("sub"):
        raise LoginRefused("userinfo_sub_mismatch", "userinfo is about another subject")
    return claims


def exchange_code(*, code: str, redirect_uri: str, code_verifier: str | None) -> dict:
    """Trade the authorization code for tokens (``client_secret_post``)."""
    payload = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "client_secret": settings.OIDC_RP_CLIENT_SECRET,
    }
    if code_verifier:
        payload["code_verifier"] = code_verifier
    response = http().post(
        provider_metadata()["token_endpoint"], data=payload, timeout=settings.OIDC_TIMEOUT
    )
    provider_unavailable_if(response)
    try:
        body = response.json()
    except ValueError:
        if response.status_code < 400:
            # An error page where tokens should be (a proxy, a maintenance page).
            raise ProviderUnavailable("token response is not JSON", response=response) from None
        body = {}
    if response.status_code >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        raise LoginRefused("code_rejected", str(error or response.status_code))
    if not isinstance(body, dict) or not body.get("id_token") or not body.get("access_token"):
        raise LoginRefused("invalid_token", "token response lacks id_token or access_token")
    if str(body.get("token_type", "")).lower() != "bearer":
        raise LoginRefused("invalid_token", "token_type is not Bearer")
    return body


def provider_key_ids() -> set[str]:
    """The kids of the signing keys cached for the configured provider (what a key
    rotation changes)."""
    cache = _cache()
    with cache.lock:
        return set(cache.keys)


def provider_cache_clear() -> None:
    """Forget every provider's metadata and keys (after a configuration change)."""
    with _caches_lock:
        _caches.clear()
