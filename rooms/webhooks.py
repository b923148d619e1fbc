"""LiveKit webhooks at ``/hooks/livekit/``: signed events from the media nodes become
meeting and participant sessions, observed load, and released allocations.

A node signs each delivery with its API secret: the ``Authorization`` header is a
JWT issued by the node's API key whose ``sha256`` claim is the body's digest. The
key names the node (several nodes may share one: each of their secrets is tried).
Anything that does not verify is refused with 401 before a row is read for it.

LiveKit retries a delivery until it is acknowledged, and deliveries may arrive out
of order: ``rooms.webhook_events`` applies each event once.
"""

from __future__ import annotations

import logging

import jwt
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from google.protobuf import json_format
from livekit.protocol.webhook import WebhookEvent
from prometheus_client import Counter

from media_nodes.driver import livekit_sdk
from media_nodes.models import MediaNode
from rooms.webhook_events import KNOWN_EVENTS, WebhookRefused, webhook_event_apply

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024

WEBHOOKS = Counter(
    "visio_livekit_webhooks_total",
    "LiveKit webhooks received, by event (room_started...; 'unknown' when refused before "
    "reading it) and outcome (processed, duplicate, ignored, or the refusal's status)",
    ["event", "outcome"],
)


# -- Authentication -------------------------------------------------------------------


def _claimed_key(token: str) -> str | None:
    """The API key the token says it was issued by (unverified: it only picks the
    secrets to try)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    key = claims.get("iss") if isinstance(claims, dict) else None
    return key if isinstance(key, str) and key else None


def webhook_authenticate(*, body: bytes, authorization: str) -> tuple[MediaNode, WebhookEvent]:
    """The sending node and its event, or WebhookRefused (401 when the signature,
    the key, the body digest or the expiry is wrong; 400 for a signed body that is
    not a LiveKit event)."""
    token = authorization.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    key = _claimed_key(token)
    if key is None:
        raise WebhookRefused(401, "invalid authorization token")
    # A body that is not UTF-8 cannot have been signed by LiveKit; surrogateescape
    # makes the digest check fail on it (401) rather than crash.
    text = body.decode("utf-8", errors="surrogateescape")
    lk, _aiohttp = livekit_sdk()
    for node in MediaNode.objects.filter(api_key=key).order_by("pk"):
        receiver = lk.WebhookReceiver(lk.TokenVerifier(node.api_key, node.api_secret))
        try:
            return node, receiver.receive(text, token)
        except json_format.ParseError:
            # Signature and digest held (parsing comes last): the node sent nonsense.
            raise WebhookRefused(400, "the body is not a LiveKit webhook event") from None
        except Exception:  # noqa: S112 - the SDK raises bare Exceptions; try the next secret
            continue
    raise WebhookRefused(401, "invalid signature")


# -- View -----------------------------------------------------------------------------


def _event_label(event: WebhookEvent | None) -> str:
    """A bounded label: the events LiveKit documents, anything else as 'other'."""
    if event is None:
        return "unknown"
    return event.event if event.event in KNOWN_EVENTS else "other"


def _refusal(status: int, message: str, event: str = "unknown") -> JsonResponse:
    WEBHOOKS.labels(event=event, outcome=str(status)).inc()
    return JsonResponse({"error": message}, status=status)


@csrf_exempt
@require_POST
def livekit_webhook(request):
    """Receive one signed LiveKit event from a media node."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return _refusal(413, "body too large")
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _refusal(413, "body too large")
    authorization = request.headers.get("Authorization", "")
    if not authorization.strip():
        return _refusal(401, "authorization header required")
    event = None
    try:
        node, event = webhook_authenticate(body=body, authorization=authorization)
        outcome = webhook_event_apply(node=node, event=event)
    except WebhookRefused as refused:
        # Never the token nor the body: only why, and from where.
        logger.warning(
            "LiveKit webhook refused (%s): %s, from %s",
            refused.status,
            refused.message,
            request.META.get("REMOTE_ADDR"),
        )
        return _refusal(refused.status, refused.message, _event_label(event))
    WEBHOOKS.labels(event=_event_label(event), outcome=outcome).inc()
    logger.info("LiveKit %s %s from %s: %s", event.event, event.id, node.name, outcome)
    return JsonResponse({"status": outcome})
