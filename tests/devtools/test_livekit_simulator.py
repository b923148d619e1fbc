"""The LiveKit node simulator speaks the real protocol: checked with the official SDK."""

import asyncio
import datetime
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import jwt
import pytest
import requests
from livekit import api

from devtools.livekit_sim import SimulatedNode

KEY, SECRET = "APIsimkey", "sim-secret-long-enough-for-hs256"
ROOT = Path(__file__).resolve().parents[2]


def sdk(url, fn, *, key=KEY, secret=SECRET, token=None, timeout=5.0):
    """Run ``fn(room_service)`` with the official SDK client, as the control plane does.

    livekit-api 1.2.2 passes ``timeout=None`` to each aiohttp call, which disables the
    session's timeout; like ``media_nodes.driver``, bound the call with ``wait_for``.
    """

    async def go():
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        if token:
            client = api.LiveKitAPI.with_token(token, url, timeout=client_timeout, failover=False)
        else:
            client = api.LiveKitAPI(url, key, secret, timeout=client_timeout, failover=False)
        async with client:
            return await asyncio.wait_for(fn(client.room), timeout)

    return asyncio.run(go())


def list_room_names(url, **kwargs):
    response = sdk(url, lambda room: room.list_rooms(api.ListRoomsRequest()), **kwargs)
    return sorted(r.name for r in response.rooms)


@pytest.fixture
def node():
    with SimulatedNode(KEY, SECRET, name="paris-1", region="paris") as sim:
        yield sim


class Receiver:
    """A webhook endpoint that records what it gets; can answer 503 a few times first."""

    def __init__(self):
        self.received: list[tuple[str, str]] = []
        self.failures_left = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                if receiver.failures_left:
                    receiver.failures_left -= 1
                    self.send_response(503)
                else:
                    receiver.received.append((body, self.headers["Authorization"]))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/livekit/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    hooks = Receiver()
    yield hooks
    hooks.server.shutdown()
    hooks.server.server_close()


def test_sdk_creates_lists_and_deletes_rooms_on_independent_nodes():
    """The SDK's RoomService works against two nodes, whose rooms stay apart."""
    with (
        SimulatedNode(KEY, SECRET, name="paris-1") as paris,
        SimulatedNode(KEY, SECRET, name="lyon-1") as lyon,
    ):
        assert paris.port != lyon.port
        created = sdk(
            paris.url,
            lambda room: room.create_room(
                api.CreateRoomRequest(name="conseil", max_participants=2, metadata="m")
            ),
        )
        assert created.sid.startswith("RM_")
        assert (created.name, created.max_participants, created.metadata) == ("conseil", 2, "m")
        again = sdk(paris.url, lambda room: room.create_room(api.CreateRoomRequest(name="conseil")))
        assert again.sid == created.sid  # creating an existing room returns it
        sdk(lyon.url, lambda room: room.create_room(api.CreateRoomRequest(name="comite")))

        assert list_room_names(paris.url) == ["conseil"]
        assert list_room_names(lyon.url) == ["comite"]

        paris.join("conseil", "agent-1", name="Élodie")
        listed = sdk(
            paris.url,
            lambda room: room.list_participants(api.ListParticipantsRequest(room="conseil")),
        )
        assert [(p.identity, p.name) for p in listed.participants] == [("agent-1", "Élodie")]
        rooms = sdk(
            paris.url, lambda room: room.list_rooms(api.ListRoomsRequest(names=["conseil"]))
        )
        assert rooms.rooms[0].num_participants == 1
        fetched = sdk(
            paris.url,
            lambda room: room.get_participant(
                api.RoomParticipantIdentity(room="conseil", identity="agent-1")
            ),
        )
        assert fetched.sid.startswith("PA_")
        updated = sdk(
            paris.url,
            lambda room: room.update_room_metadata(
                api.UpdateRoomMetadataRequest(room="conseil", metadata="new")
            ),
        )
        assert updated.metadata == "new"

        sdk(
            paris.url,
            lambda room: room.remove_participant(
                api.RoomParticipantIdentity(room="conseil", identity="agent-1")
            ),
        )
        assert paris.participant_identities("conseil") == []
        sdk(paris.url, lambda room: room.delete_room(api.DeleteRoomRequest(room="conseil")))
        assert list_room_names(paris.url) == []
        assert list_room_names(lyon.url) == ["comite"]

        with pytest.raises(api.TwirpError) as missing:
            sdk(paris.url, lambda room: room.delete_room(api.DeleteRoomRequest(room="conseil")))
        assert (missing.value.code, missing.value.status) == ("not_found", 404)


def test_twirp_json_bodies_are_accepted(node):
    """A Twirp JSON call gets a JSON answer with proto field names."""
    node.join("salle", "agent-1")
    token = api.AccessToken(KEY, SECRET).with_grants(api.VideoGrants(room_list=True)).to_jwt()
    response = requests.post(
        f"{node.url}/twirp/livekit.RoomService/ListRooms",
        json={"names": ["salle"]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=2,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    [room] = response.json()["rooms"]
    assert (room["name"], room["num_participants"]) == ("salle", 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret": "another-secret-long-enough-for-hs256"},
        {"key": "APIotherkey"},
        {
            "token": api.AccessToken(KEY, SECRET)
            .with_grants(api.VideoGrants(room_list=True))
            .with_ttl(datetime.timedelta(minutes=-5))
            .to_jwt()
        },
    ],
    ids=["wrong-secret", "wrong-key", "expired"],
)
def test_unverifiable_tokens_get_a_bare_401(node, kwargs):
    """A token the node cannot verify is refused before Twirp, as livekit-server does."""
    with pytest.raises(api.TwirpError) as refused:
        list_room_names(node.url, **kwargs)
    assert refused.value.status == 401
    assert refused.value.code == "unknown"  # livekit-server's middleware sends no Twirp body


@pytest.mark.parametrize(
    ("grants", "call"),
    [
        (api.VideoGrants(room_list=True), lambda r: r.create_room(api.CreateRoomRequest(name="x"))),
        (api.VideoGrants(room_create=True), lambda r: r.list_rooms(api.ListRoomsRequest())),
        (None, lambda r: r.delete_room(api.DeleteRoomRequest(room="x"))),
        (
            api.VideoGrants(room_admin=True, room="other"),
            lambda r: r.list_participants(api.ListParticipantsRequest(room="x")),
        ),
    ],
    ids=["create-without-roomCreate", "list-without-roomList", "no-grant", "admin-of-other-room"],
)
def test_missing_grant_is_refused_with_twirp_unauthenticated(node, grants, call):
    """A valid token without the method's grant gets Twirp ``unauthenticated`` (401)."""
    token = api.AccessToken(KEY, SECRET)
    if grants:
        token.with_grants(grants)
    with pytest.raises(api.TwirpError) as refused:
        sdk(node.url, call, token=token.to_jwt())
    assert (refused.value.code, refused.value.status) == ("unauthenticated", 401)
    assert refused.value.message == "permissions denied"
    assert node.room_names() == []


def test_webhooks_are_accepted_by_the_sdk_receiver(receiver):
    """Each lifecycle webhook verifies with the SDK's WebhookReceiver; forgeries do not."""
    with SimulatedNode(KEY, SECRET, region="paris", webhook_url=receiver.url) as node:
        sdk(node.url, lambda room: room.create_room(api.CreateRoomRequest(name="salle")))
        node.join("salle", "agent-1", name="Agent Un")
        node.leave("salle", "agent-1")
        sdk(node.url, lambda room: room.delete_room(api.DeleteRoomRequest(room="salle")))
        node.join("auto", "agent-2")  # a join starts the room
        node.finish("auto")
        assert node.flush(5)

    verifier = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))
    events = [verifier.receive(body, auth) for body, auth in receiver.received]
    assert [(e.event, e.room.name) for e in events] == [
        ("room_started", "salle"),
        ("participant_joined", "salle"),
        ("participant_left", "salle"),
        ("room_finished", "salle"),
        ("room_started", "auto"),
        ("participant_joined", "auto"),
        ("participant_left", "auto"),
        ("room_finished", "auto"),
    ]
    assert events[1].participant.identity == "agent-1"
    assert events[1].participant.name == "Agent Un"
    assert events[1].participant.region == "paris"
    assert events[1].room.num_participants == 1
    assert len({e.id for e in events}) == len(events)
    assert all(e.created_at > 0 and e.room.sid.startswith("RM_") for e in events)
    assert [d.event.event for d in node.sent_webhooks] == [e.event for e in events]
    assert all(d.delivered for d in node.sent_webhooks)

    body, auth = receiver.received[1]
    with pytest.raises(Exception, match="hash mismatch"):
        verifier.receive(body.replace("agent-1", "agent-9"), auth)
    with pytest.raises(jwt.InvalidSignatureError):
        api.WebhookReceiver(api.TokenVerifier(KEY, "another-secret-long-enough-for-hs256")).receive(
            body, auth
        )


def test_webhooks_are_retried_and_can_be_replayed(receiver):
    """A 5xx is retried; a replay sends the same signed event twice, as LiveKit may."""
    receiver.failures_left = 2
    with SimulatedNode(KEY, SECRET, webhook_url=receiver.url, webhook_retry_delay=0.05) as node:
        node.join("salle", "agent-1")
        assert node.flush(5)
        assert [d.attempts for d in node.sent_webhooks] == [3, 1]
        node.replay_last_webhook()
        assert node.flush(5)
    assert receiver.received[-1] == receiver.received[-2]
    verifier = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))
    assert verifier.receive(*receiver.received[-1]).event == "participant_joined"


def test_dead_node_refuses_connections_until_it_recovers(node):
    """die() refuses connections at once; recover() serves the same port and state."""
    node.join("salle", "agent-1")
    node.die()
    started = time.monotonic()
    with pytest.raises(aiohttp.ClientConnectionError):
        list_room_names(node.url)
    assert time.monotonic() - started < 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", node.port), timeout=1)
    node.recover()
    assert list_room_names(node.url) == ["salle"]


def test_hanging_node_times_clients_out_and_still_stops():
    """hang() accepts but never answers: a 0.5 s client times out; stop() stays prompt."""
    node = SimulatedNode(KEY, SECRET).start()
    try:
        node.hang()
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            list_room_names(node.url, timeout=0.5)
        assert 0.4 < time.monotonic() - started < 2
        node.recover()
        assert list_room_names(node.url) == []
        node.hang()
        outcome = []

        def waiting_client():
            try:
                outcome.append(list_room_names(node.url))
            except Exception as exc:
                outcome.append(exc)

        client = threading.Thread(target=waiting_client, daemon=True)
        client.start()
        time.sleep(0.2)  # a request is now waiting inside the node
    finally:
        started = time.monotonic()
        node.stop()
        assert time.monotonic() - started < 2
    client.join(timeout=2)
    assert isinstance(outcome[0], aiohttp.ServerDisconnectedError)  # closed, never answered


def test_slow_node_delays_answers(node):
    """slow(0.3) delays each answer by 0.3 s; recover() removes the delay."""
    node.slow(0.3)
    started = time.monotonic()
    list_room_names(node.url)
    assert time.monotonic() - started >= 0.3
    node.recover()
    started = time.monotonic()
    list_room_names(node.url)
    assert time.monotonic() - started < 0.3


def test_cli_starts_nodes_the_sdk_can_call():
    """``python -m devtools.livekit_sim`` starts the nodes it prints, until terminated."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.livekit_sim", "--nodes", "2", "--region", "lyon"]
        + ["--base-port", "0", "--key", KEY, "--secret", SECRET],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = [process.stdout.readline().split() for _ in range(2)]
        assert [line[0] for line in lines] == ["lyon-1", "lyon-2"]
        urls = [line[2].removeprefix("url=") for line in lines]
        assert len(set(urls)) == 2
        for url in urls:
            assert list_room_names(url) == []
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
