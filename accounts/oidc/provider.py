"""What this service knows of the identity provider: its metadata and its keys.

Metadata comes from the discovery document, whose ``issuer`` must be the configured
one, and is cached. Signing keys come from the JWKS and are cached for
``OIDC_JWKS_TTL_SECONDS`` (so a key the provider dropped stops being trusted), in
each process and in the shared cache; a token naming an unknown ``kid``, or failing
its signature under a known one (a key replaced under its old ``kid``), fetches them
again at once, but at most once per ``OIDC_JWKS_MIN_REFETCH_SECONDS`` for all
processes together. Every check a token must pass is here, with a precise reason
when it fails.

Whether the provider answers is known from every call made to it; when it has
been silent for ``OIDC_PROVIDER_CHECK_SECONDS``, ``provider_check`` asks again
before an agent is sent there, so that an agent is not redirected to a provider that
is down.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field

import jwt
import requests
from django.conf import settings
from django.core.cache import cache as shared_cache

from accounts.login import LoginRefused

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ("RS256", "ES256")
# ProConnect's assurance levels, weakest first; anything else is below eidas1.
ACR_LEVELS = ("eidas1", "eidas2", "eidas3")
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


@dataclass
class _ProviderCache:
    metadata: dict | None = None
    metadata_at: float = 0.0
    # When the provider last answered a call (not with a 5xx); 0 after a failure.
    answered_at: float = 0.0
    keys: dict = field(default_factory=dict)
    # Wall-clock time (comparable across processes) of the JWKS fetch ``keys`` come from.
    keys_at: float = 0.0
    # This process's last refetch, for when the shared cache cannot be reached.
    refetch_at: float = 0.0
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


def expected_issuer() -> str:
    """The issuer this service trusts: ``OIDC_OP_ISSUER``, else the discovery URL's base."""
    if settings.OIDC_OP_ISSUER:
        return settings.OIDC_OP_ISSUER
    url = settings.OIDC_OP_DISCOVERY_URL
    if not url.endswith(DISCOVERY_SUFFIX):
        raise LoginRefused(
            "provider_misconfigured", "set OIDC_OP_ISSUER: the discovery URL does not name it"
        )
    return url.removesuffix(DISCOVERY_SUFFIX)


def _metadata_fetch(cache: _ProviderCache) -> dict:
    response = http().get(settings.OIDC_OP_DISCOVERY_URL, timeout=settings.OIDC_TIMEOUT)
    response.raise_for_status()
    metadata = response.json()
    if not isinstance(metadata, dict):
        raise LoginRefused("provider_misconfigured", "discovery is not a JSON object")
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(metadata.get(key), str):
            raise LoginRefused("provider_misconfigured", f"discovery lacks {key}")
    expected = expected_issuer()
    if metadata["issuer"] != expected:
        # Another provider's document (a wrong URL, a proxy, an attacker): none of its
        # endpoints or keys may be used. Issuers are public, and repr() keeps a hostile
        # value on one line.
        logger.error(
            "ProConnect discovery refused: its issuer %r is not the configured issuer %r",
            metadata["issuer"][:200],
            expected,
        )
        raise LoginRefused("provider_misconfigured", "discovery names another issuer")
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


def _jwks_parse(body) -> dict:
    keys = {}
    for jwk in body.get("keys", []) if isinstance(body, dict) else []:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or "kid" not in jwk:
            continue
        try:
            keys[jwk["kid"]] = jwt.PyJWK(jwk)
        except jwt.PyJWTError:
            continue  # a key of a type we do not use
    return keys


def _shared_key(name: str) -> str:
    """A shared-cache key of this provider (its discovery URL, hashed)."""
    url = settings.OIDC_OP_DISCOVERY_URL.encode()
    return f"oidc:{name}:{hashlib.sha256(url).hexdigest()[:16]}"


def _jwks_fetch(cache: _ProviderCache) -> None:
    """Download the JWKS; the keys it lists replace every key known before."""
    response = http().get(provider_metadata()["jwks_uri"], timeout=settings.OIDC_TIMEOUT)
    response.raise_for_status()
    body = response.json()
    cache.keys, cache.keys_at = _jwks_parse(body), time.time()
    try:
        shared_cache.set(
            _shared_key("jwks"),
            {"at": cache.keys_at, "jwks": body},
            timeout=settings.OIDC_JWKS_TTL_SECONDS,
        )
    except Exception:  # noqa: BLE001 - the shared copy only saves other processes a fetch
        logger.warning("JWKS not shared: the cache cannot be reached")


def _jwks_adopt_shared(cache: _ProviderCache) -> bool:
    """Take the JWKS another process fetched after this one's, if it is still fresh."""
    try:
        shared = shared_cache.get(_shared_key("jwks"))
    except Exception:  # noqa: BLE001 - no shared copy: this process fetches its own
        return False
    if not isinstance(shared, dict) or not isinstance(shared.get("at"), float):
        return False
    if shared["at"] <= cache.keys_at or time.time() - shared["at"] >= (
        settings.OIDC_JWKS_TTL_SECONDS
    ):
        return False
    cache.keys, cache.keys_at = _jwks_parse(shared["jwks"]), shared["at"]
    return True


def _jwks_refetch_allowed(cache: _ProviderCache) -> bool:
    """Whether an unscheduled refetch may run now: one per window, for all processes.

    Only the provider's own answers (through the token endpoint, over TLS) name a
    ``kid``, but a provider in trouble must not make every login download its keys.
    """
    window = settings.OIDC_JWKS_MIN_REFETCH_SECONDS
    try:
        return bool(shared_cache.add(_shared_key("jwks-refetch"), 1, timeout=window))
    except Exception:  # noqa: BLE001 - the cache is down: limit this process alone
        now = time.monotonic()
        if now - cache.refetch_at < window:
            return False
        cache.refetch_at = now
        return True


def signing_key(kid, *, failed: jwt.PyJWK | None = None) -> jwt.PyJWK:
    """The provider's key ``kid``, from keys at most ``OIDC_JWKS_TTL_SECONDS`` old.

    An unknown ``kid``, or ``failed`` (the key under that ``kid`` that a signature
    did not match), fetches the JWKS again if no process did in the last
    ``OIDC_JWKS_MIN_REFETCH_SECONDS``; then a ``kid`` the provider no longer lists is
    refused.
    """
    if not isinstance(kid, str):
        raise LoginRefused("unknown_key", "the token names no kid")
    cache = _cache()
    with cache.lock:
        stale = time.time() - cache.keys_at >= settings.OIDC_JWKS_TTL_SECONDS
        fetched = stale and not _jwks_adopt_shared(cache)
        if fetched:
            _jwks_fetch(cache)
        key = cache.keys.get(kid)
        if key is not None and (failed is None or key is not failed):
            return key
        # The provider may have changed its keys since: maybe another process saw it.
        if not fetched and not _jwks_adopt_shared(cache) and _jwks_refetch_allowed(cache):
            _jwks_fetch(cache)
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
        try:
            claims = _decode(token, key, algorithm, require)
        except jwt.InvalidSignatureError:
            # The provider may have replaced the key under this kid: refetch (rate
            # limited) and try once more with what it lists now.
            fresh = signing_key(header.get("kid"), failed=key)
            if fresh is key:
                raise
            claims = _decode(token, fresh, algorithm, require)
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
    # OpenID Connect Core 3.1.3.7: the authorized party, when named, must be this client
    # whatever the shape of ``aud``; with several audiences it must be named.
    if "azp" in claims and claims["azp"] != settings.OIDC_RP_CLIENT_ID:
        raise LoginRefused("wrong_audience", f"{purpose}: azp is not this client")
    if isinstance(claims.get("aud"), list) and len(claims["aud"]) > 1 and "azp" not in claims:
        raise LoginRefused("wrong_audience", f"{purpose}: several audiences and no azp")
    return claims


def _decode(token: str, key: jwt.PyJWK, algorithm: str, require: tuple[str, ...]) -> dict:
    return jwt.decode(
        token,
        key=key,
        algorithms=[algorithm],
        audience=settings.OIDC_RP_CLIENT_ID,
        issuer=provider_metadata()["issuer"],
        leeway=settings.OIDC_CLOCK_SKEW_SECONDS,
        options={"require": list(require), "strict_aud": False},
    )


def verify_id_token(id_token: str, *, nonce: str | None) -> dict:
    """All of OpenID Connect Core 3.1.3.7 that applies, plus ProConnect's minimum ``acr``."""
    claims = verify_signed_jwt(
        id_token, purpose="ID token", require=("iss", "aud", "exp", "iat", "sub")
    )
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


def provider_cache_clear(*, shared: bool = True) -> None:
    """Forget every provider's metadata and keys (after a configuration change) in this
    process, and with ``shared`` the configured provider's in the shared cache too."""
    with _caches_lock:
        _caches.clear()
    if not shared:
        return
    try:
        shared_cache.delete_many([_shared_key("jwks"), _shared_key("jwks-refetch")])
    except Exception:  # noqa: BLE001 - nothing shared to forget
        logger.warning("JWKS cache not cleared: the cache cannot be reached")
