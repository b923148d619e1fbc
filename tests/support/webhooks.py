"""LiveKit webhook deliveries as a node sends them: the event as protobuf JSON, and a
JWT from the node's key and secret whose ``sha256`` claim is the body's digest, built
with the SDK's own types."""

import base64
import hashlib
import time
import uuid

from django.test import Client
from google.protobuf.json_format import MessageToJson
from livekit import api
from livekit.protocol import models as lk_models
from livekit.protocol.webhook import WebhookEvent

URL = "/hooks/livekit/"


def make_event(
    kind,
    *,
    room_name="abc-defg-hij",
    room_sid="RM_one",
    identity=None,
    participant_sid=None,
    event_id=None,
    at=None,
):
    """A webhook event of ``kind`` for a room (and a participant when ``identity``)."""
    at = int(at if at is not None else time.time())
    event = WebhookEvent(
        event=kind,
        id=event_id or f"EV_{uuid.uuid4().hex[:12]}",
        created_at=at,
        room=lk_models.Room(sid=room_sid, name=room_name, creation_time=at),
    )
    if identity is not None:
        event.participant.CopyFrom(
            lk_models.ParticipantInfo(
                sid=participant_sid or f"PA_{identity}",
                identity=identity,
                joined_at=at,
                state=lk_models.ParticipantInfo.ACTIVE,
            )
        )
    return event


def sign(body: str, *, key: str, secret: str, ttl=None) -> str:
    """The Authorization header a node sends: a JWT carrying the body's SHA-256."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    token = api.AccessToken(key, secret).with_sha256(digest)
    if ttl is not None:
        token = token.with_ttl(ttl)
    return token.to_jwt()


def signed(event, node):
    """The body of ``event`` and its signature by ``node``."""
    body = MessageToJson(event)
    return body, sign(body, key=node.api_key, secret=node.api_secret)


def post(body, auth=None, client=None):
    """POST ``body`` to the webhook endpoint, with ``auth`` as its Authorization."""
    extra = {"HTTP_AUTHORIZATION": auth} if auth is not None else {}
    return (client or Client()).post(URL, data=body, content_type="application/json", **extra)


def deliver(event, node, client=None):
    """Deliver ``event`` as ``node`` sends it, signed."""
    return post(*signed(event, node), client=client)
