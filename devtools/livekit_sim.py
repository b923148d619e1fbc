"""LiveKit media node simulator. DEV/TEST TOOL ONLY: production code never imports it.

No LiveKit server can run here, so this stands in for one on the wire:

* the Twirp ``livekit.RoomService`` API over HTTP (protobuf or JSON bodies), behind the
  same JWT bearer auth and per-method video grants as livekit-server
  (``pkg/service/auth.go``, ``roomservice.go``);
* signed webhooks (``room_started``, ``room_finished``, ``participant_joined``,
  ``participant_left``) as ``livekit/protocol``'s URL notifier sends them: the
  protojson body, ``Authorization: <JWT>`` whose ``sha256`` claim is the body's hash;
* fault modes for tests: ``die()`` (connections refused), ``hang()`` (accepted, never
  answered), ``slow(seconds)``, and ``recover()``.

As in livekit-server, a token that cannot be verified gets a bare HTTP 401 (the SDK
reports code ``unknown``), while a valid token lacking the method's grant gets the Twirp
error ``unauthenticated`` ("permissions denied"), also 401, not ``permission_denied``.

Run ``python -m devtools.livekit_sim --nodes 3 --region paris`` to start nodes by hand.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import queue
import secrets
import signal
import string
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import requests
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import models
from livekit.protocol import room as room_pb
from livekit.protocol.webhook import WebhookEvent

logger = logging.getLogger(__name__)

TWIRP_PREFIX = "/twirp/livekit.RoomService/"
JWT_LEEWAY_SECONDS = 60  # go-jose's default leeway, which livekit's verifier keeps
WEBHOOK_TOKEN_TTL_SECONDS = 300  # the URL notifier signs each webhook for 5 minutes
WEBHOOK_CONTENT_TYPE = "application/webhook+json"
_TWIRP_STATUS = {
    "invalid_argument": 400,
    "malformed": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "bad_route": 404,
    "internal": 500,
}


def _short_id(prefix: str) -> str:
    """An id shaped like LiveKit's (``RM_``, ``PA_``, ``EV_`` then 12 characters)."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(12))


class TwirpFailure(Exception):
    """A Twirp error answer: ``code`` and ``msg`` in a JSON body, status from the code."""

    def __init__(self, code: str, msg: str):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.status = code, msg, _TWIRP_STATUS.get(code, 500)


class InvalidToken(Exception):
    """The bearer token cannot be verified: livekit-server answers a bare 401."""


class RoomFull(Exception):
    """A simulated participant could not join: the room's ``max_participants`` is reached."""


@dataclass
class WebhookDelivery:
    """One webhook as sent: the signed body and header, and how its delivery went."""

    event: WebhookEvent
    body: str
    authorization: str
    attempts: int = 0
    status: int | None = None  # last HTTP status; None when nothing answered
    delivered: bool = False


@dataclass
class _SimRoom:
    info: models.Room
    participants: dict[str, models.ParticipantInfo] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for hanging handler threads

    def __init__(self, address: tuple[str, int], node: SimulatedNode):
        self.node = node
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "livekit-sim"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.server.node.name, format % args)

    def do_GET(self) -> None:
        # livekit-server answers its health check on "/" with 200 OK.
        if not self.server.node._gate():
            self.close_connection = True
        elif self.path == "/":
            self._reply(200, "text/plain", b"OK")
        else:
            self._reply(404, "text/plain", b"404 page not found")

    def do_POST(self) -> None:
        node = self.server.node
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not node._gate():
            self.close_connection = True
            return
        try:
            grants = node._authenticate(self.headers.get("Authorization"))
        except InvalidToken as exc:
            self._reply(401, "text/plain", str(exc).encode())
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            payload = node._call(self.path, content_type, body, grants)
        except TwirpFailure as exc:
            error = json.dumps({"code": exc.code, "msg": exc.msg}).encode()
            self._reply(exc.status, "application/json", error)
            return
        self._reply(200, content_type, payload)

    def _reply(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class SimulatedNode:
    """One simulated LiveKit node: RoomService API, webhooks, and fault modes for tests."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        name: str = "sim",
        region: str = "",
        webhook_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_retries: int = 3,
        webhook_retry_delay: float = 0.1,
    ):
        self.api_key, self.api_secret = api_key, api_secret
        self.name, self.region, self.webhook_url = name, region, webhook_url
        self.host, self.port = host, port
        self.webhook_retries, self.webhook_retry_delay = webhook_retries, webhook_retry_delay
        self.sent_webhooks: list[WebhookDelivery] = []
        self._rooms: dict[str, _SimRoom] = {}
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._answering = threading.Event()  # cleared while hanging
        self._answering.set()
        self._closing = threading.Event()
        self._delay = 0.0
        self._webhooks: queue.Queue[WebhookDelivery | None] = queue.Queue()
        self._pending = 0
        self._pending_changed = threading.Condition()
        self._webhook_thread: threading.Thread | None = None
        self._rpcs: dict[str, tuple[type[Message], Callable[[Any, dict], Message]]] = {
            "CreateRoom": (room_pb.CreateRoomRequest, self._create_room),
            "ListRooms": (room_pb.ListRoomsRequest, self._list_rooms),
            "DeleteRoom": (room_pb.DeleteRoomRequest, self._delete_room),
            "UpdateRoomMetadata": (room_pb.UpdateRoomMetadataRequest, self._update_metadata),
            "ListParticipants": (room_pb.ListParticipantsRequest, self._list_participants),
            "GetParticipant": (room_pb.RoomParticipantIdentity, self._get_participant),
            "RemoveParticipant": (room_pb.RoomParticipantIdentity, self._remove_participant),
        }

    # Lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimulatedNode:
        """Listen (on a free port when ``port`` is 0) and start sending webhooks."""
        self._closing.clear()
        self._listen()
        self._webhook_thread = threading.Thread(
            target=self._deliver_webhooks, name=f"{self.name}-webhooks", daemon=True
        )
        self._webhook_thread.start()
        return self

    def stop(self, flush_timeout: float = 1.0) -> None:
        """Deliver what webhooks it can within ``flush_timeout``, then shut down; never hangs."""
        self.flush(flush_timeout)
        self._closing.set()
        self._answering.set()  # release hanging requests; they close without an answer
        self._unlisten()
        if self._webhook_thread is not None:
            self._webhooks.put(None)
            self._webhook_thread.join(timeout=2)
            self._webhook_thread = None

    def __enter__(self) -> SimulatedNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-http",
            daemon=True,
        )
        self._serve_thread.start()

    def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # Fault modes ---------------------------------------------------------------------

    def die(self) -> None:
        """Close the listening socket: new connections are refused until ``recover()``."""
        self._unlisten()

    def hang(self) -> None:
        """Accept connections but answer none of them until ``recover()`` (or ``stop()``)."""
        self._answering.clear()

    def slow(self, seconds: float) -> None:
        """Wait ``seconds`` before each answer."""
        self._delay = seconds

    def recover(self) -> None:
        """Back to normal: listening again on the same port, answering without delay."""
        self._delay = 0.0
        self._answering.set()
        if self._server is None and not self._closing.is_set():
            self._listen()

    def _gate(self) -> bool:
        """Apply the fault mode to one request; False means close it unanswered."""
        self._answering.wait()
        if self._delay and self._closing.wait(self._delay):
            return False
        return not self._closing.is_set()

    # Auth and Twirp ------------------------------------------------------------------

    def _authenticate(self, header: str | None) -> dict[str, Any] | None:
        """The token's claims, None without a token; InvalidToken for a bad one."""
        if not header:
            return None  # livekit-server lets it through; the method then refuses it
        if not header.startswith("Bearer "):
            raise InvalidToken("invalid authorization header. Must start with Bearer ")
        token = header[len("Bearer ") :]
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            raise InvalidToken("invalid authorization token") from None
        if issuer != self.api_key:
            raise InvalidToken(f"invalid API key: {issuer}")
        try:
            return jwt.decode(
                token,
                self.api_secret,
                algorithms=["HS256"],
                issuer=self.api_key,
                leeway=JWT_LEEWAY_SECONDS,
                options={"require": ["exp"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token, error: {exc}") from None

    def _call(
        self, path: str, content_type: str, body: bytes, grants: dict[str, Any] | None
    ) -> bytes:
        """Run one Twirp call and return the encoded answer, or raise ``TwirpFailure``."""
        method = path[len(TWIRP_PREFIX) :] if path.startswith(TWIRP_PREFIX) else ""
        if method not in self._rpcs:
            raise TwirpFailure("bad_route", f"no handler for path {path!r}")
        if content_type not in ("application/protobuf", "application/json"):
            raise TwirpFailure("bad_route", f"unexpected Content-Type: {content_type!r}")
        request_class, handler = self._rpcs[method]
        request = request_class()
        try:
            if content_type == "application/json":
                json_format.Parse(body.decode() or "{}", request, ignore_unknown_fields=True)
            else:
                request.ParseFromString(body)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
            raise TwirpFailure("malformed", f"the request could not be decoded: {exc}") from None
        answer = handler(request, (grants or {}).get("video") or {})
        if content_type == "application/json":
            as_dict = json_format.MessageToDict(
                answer,
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=True,
            )
            return json.dumps(as_dict).encode()
        return answer.SerializeToString()

    @staticmethod
    def _require(video: dict, grant: str, room: str | None = None) -> None:
        """Refuse as livekit-server's ``twirpAuthError`` does: 401 ``unauthenticated``."""
        if not video.get(grant) or (room is not None and video.get("room", "") != room):
            raise TwirpFailure("unauthenticated", "permissions denied")

    def _create_room(self, req: room_pb.CreateRoomRequest, video: dict) -> models.Room:
        self._require(video, "roomCreate")
        if not req.name:
            raise TwirpFailure("invalid_argument", "no room name")
        return self._open_room(req.name, req)

    def _list_rooms(self, req: room_pb.ListRoomsRequest, video: dict) -> Message:
        self._require(video, "roomList")
        with self._lock:
            rooms = [
                r.info for name, r in self._rooms.items() if not req.names or name in req.names
            ]
            return room_pb.ListRoomsResponse(rooms=rooms)

    def _delete_room(self, req: room_pb.DeleteRoomRequest, video: dict) -> Message:
        self._require(video, "roomCreate")
        if not self._close_room(req.room, models.ROOM_END_API_DELETE, models.ROOM_DELETED):
            raise TwirpFailure("not_found", "room not found")
        return room_pb.DeleteRoomResponse()

    def _update_metadata(self, req: room_pb.UpdateRoomMetadataRequest, video: dict) -> Message:
        self._require(video, "roomAdmin", req.room)
        with self._lock:
            if req.room not in self._rooms:
                raise TwirpFailure("not_found", "requested room does not exist")
            self._rooms[req.room].info.metadata = req.metadata
            return self._rooms[req.room].info

    def _list_participants(self, req: room_pb.ListParticipantsRequest, video: dict) -> Message:
        self._require(video, "roomAdmin", req.room)
        with self._lock:  # an unknown room has no participants, as in livekit-server
            room = self._rooms.get(req.room)
            participants = list(room.participants.values()) if room else []
            return room_pb.ListParticipantsResponse(participants=participants)

    def _get_participant(self, req: room_pb.RoomParticipantIdentity, video: dict) -> Message:
        self._require(video, "roomAdmin", req.room)
        with self._lock:
            room = self._rooms.get(req.room)
            if room is None or req.identity not in room.participants:
                raise TwirpFailure("not_found", "participant does not exist")
            return room.participants[req.identity]

    def _remove_participant(self, req: room_pb.RoomParticipantIdentity, video: dict) -> Message:
        self._require(video, "roomAdmin", req.room)
        if not self._disconnect(req.room, req.identity, models.PARTICIPANT_REMOVED):
            raise TwirpFailure("not_found", "participant not found")
        return room_pb.RemoveParticipantResponse()

    # Room state and test hooks -------------------------------------------------------

    def _open_room(self, name: str, req: room_pb.CreateRoomRequest | None = None) -> models.Room:
        """The room called ``name``, started (with ``room_started``) if it was not."""
        with self._lock:
            if name in self._rooms:
                return self._rooms[name].info
            now = time.time()
            info = models.Room(
                sid=_short_id("RM_"),
                name=name,
                empty_timeout=(req.empty_timeout if req else 0) or 300,
                departure_timeout=(req.departure_timeout if req else 0) or 20,
                max_participants=req.max_participants if req else 0,
                metadata=req.metadata if req else "",
                creation_time=int(now),
                creation_time_ms=int(now * 1000),
            )
            self._rooms[name] = _SimRoom(info)
            self._emit("room_started", info)
            return info

    def _close_room(self, name: str, reason: int, disconnect_reason: int) -> bool:
        with self._lock:
            room = self._rooms.get(name)
            if room is None:
                return False
            for identity in list(room.participants):
                self._disconnect(name, identity, disconnect_reason)
            del self._rooms[name]
            self._emit("room_finished", room.info, room_end_reason=reason)
            return True

    def _disconnect(self, name: str, identity: str, reason: int) -> bool:
        with self._lock:
            room = self._rooms.get(name)
            participant = room.participants.pop(identity, None) if room else None
            if room is None or participant is None:
                return False
            room.info.num_participants = len(room.participants)
            participant.state = models.ParticipantInfo.DISCONNECTED
            participant.disconnect_reason = reason  # type: ignore[assignment]
            self._emit("participant_left", room.info, participant)
            return True

    def join(self, room: str, identity: str, name: str | None = None) -> models.ParticipantInfo:
        """Simulate a participant joining ``room`` (started first if needed)."""
        with self._lock:
            info = self._open_room(room)
            sim_room = self._rooms[room]
            if identity in sim_room.participants:  # LiveKit drops the older session
                self._disconnect(room, identity, models.DUPLICATE_IDENTITY)
            if info.max_participants and len(sim_room.participants) >= info.max_participants:
                raise RoomFull(f"room {room} is full ({info.max_participants} participants)")
            now = time.time()
            participant = models.ParticipantInfo(
                sid=_short_id("PA_"),
                identity=identity,
                name=name or identity,
                state=models.ParticipantInfo.ACTIVE,
                joined_at=int(now),
                joined_at_ms=int(now * 1000),
                region=self.region,
            )
            sim_room.participants[identity] = participant
            info.num_participants = len(sim_room.participants)
            self._emit("participant_joined", info, participant)
            return participant

    def leave(self, room: str, identity: str) -> bool:
        """Simulate a participant leaving; False if it was not in the room."""
        return self._disconnect(room, identity, models.CLIENT_INITIATED)

    def finish(self, room: str) -> bool:
        """End a room as its idle timeout would; False if there was no such room."""
        return self._close_room(room, models.ROOM_END_IDLE_TIMEOUT, models.ROOM_CLOSED)

    def room_names(self) -> list[str]:
        with self._lock:
            return list(self._rooms)

    def participant_identities(self, room: str) -> list[str]:
        with self._lock:
            return list(self._rooms[room].participants) if room in self._rooms else []

    # Webhooks ------------------------------------------------------------------------

    def _emit(
        self,
        kind: str,
        room: models.Room,
        participant: models.ParticipantInfo | None = None,
        room_end_reason: int = 0,
    ) -> None:
        event = WebhookEvent(event=kind, id=_short_id("EV_"), created_at=int(time.time()))
        event.room.CopyFrom(room)
        if participant is not None:
            event.participant.CopyFrom(participant)
        event.room_end_reason = room_end_reason  # type: ignore[assignment]
        body = json.dumps(json_format.MessageToDict(event), separators=(",", ":"))
        self._enqueue(WebhookDelivery(event, body, self._sign(body)))

    def _sign(self, body: str) -> str:
        """A JWT as livekit/protocol's URL notifier makes it: ``sha256`` of the body."""
        now = int(time.time())
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        claims = {
            "iss": self.api_key,
            "nbf": now,
            "exp": now + WEBHOOK_TOKEN_TTL_SECONDS,
            "sha256": digest,
        }
        return jwt.encode(claims, self.api_secret, algorithm="HS256")

    def replay_last_webhook(self) -> WebhookDelivery:
        """Send the last webhook again, byte for byte, as LiveKit's retries can."""
        last = self.sent_webhooks[-1]
        replay = WebhookDelivery(last.event, last.body, last.authorization)
        self._enqueue(replay)
        return replay

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued webhook has been delivered or given up on."""
        with self._pending_changed:
            return self._pending_changed.wait_for(lambda: self._pending == 0, timeout)

    def _enqueue(self, delivery: WebhookDelivery) -> None:
        with self._pending_changed:
            self._pending += 1
        self._webhooks.put(delivery)

    def _deliver_webhooks(self) -> None:
        # One worker keeps the events of a room in order, as LiveKit's keyed queue does.
        while (delivery := self._webhooks.get()) is not None:
            try:
                self._post(delivery)
            except Exception:  # a bug here must not kill the worker
                logger.exception("%s: webhook %s failed", self.name, delivery.event.id)
            self.sent_webhooks.append(delivery)
            with self._pending_changed:
                self._pending -= 1
                self._pending_changed.notify_all()

    def _post(self, delivery: WebhookDelivery) -> None:
        """POST with go-retryablehttp's rule: retry on no answer or a 5xx (except 501)."""
        if not self.webhook_url:
            return
        headers = {
            "Authorization": delivery.authorization,
            "Content-Type": WEBHOOK_CONTENT_TYPE,
            "User-Agent": "livekit-sim",
        }
        for attempt in range(self.webhook_retries + 1):
            if attempt and self._closing.wait(self.webhook_retry_delay * 2 ** (attempt - 1)):
                return
            delivery.attempts += 1
            try:
                response = requests.post(
                    self.webhook_url, data=delivery.body.encode(), headers=headers, timeout=2
                )
            except requests.RequestException:
                delivery.status = None
                continue
            delivery.status = response.status_code
            if response.status_code < 500 or response.status_code == 501:
                delivery.delivered = response.status_code < 300
                return


def main(argv: list[str] | None = None) -> int:
    """Start ``--nodes`` simulated nodes on consecutive ports and run until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--region", default="local")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--base-port", type=int, default=7880, help="0: any free ports")
    parser.add_argument("--key", default="devkey")
    parser.add_argument("--secret", default="secret", help="the livekit-server --dev secret")
    parser.add_argument("--webhook-url", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    nodes = [
        SimulatedNode(
            args.key,
            args.secret,
            name=f"{args.region}-{index + 1}",
            region=args.region,
            webhook_url=args.webhook_url,
            host=args.host,
            port=args.base_port + index if args.base_port else 0,
        )
        for index in range(args.nodes)
    ]
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    started: list[SimulatedNode] = []
    try:
        for node in nodes:
            started.append(node.start())
            print(f"{node.name} region={node.region} url={node.url}", flush=True)
        while not stopping.wait(0.5):
            pass
    except OSError as exc:  # most likely a port already taken
        print(f"cannot start node {node.name} on {node.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        for node in started:
            node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
