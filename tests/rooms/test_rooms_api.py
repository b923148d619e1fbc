"""Rooms API: creation, access levels, invitations, joining with a LiveKit token, and
the operators' media nodes API."""

import pytest
from livekit import api as lk

from media_nodes.models import Allocation, MediaNode
from rooms.models import Room
from tests.factories import MediaNodeFactory
from tests.support.clients import client_as, client_with_token

pytestmark = pytest.mark.django_db


def create_room(agent, **data):
    payload = {"name": "Point hebdo", "access": "ministry", "expected_size": 10, **data}
    response = client_as(agent).post("/api/v1/rooms/", payload, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def join(agent, slug, **data):
    return client_as(agent).post(f"/api/v1/rooms/{slug}/join/", data, format="json")


def test_create_room_readable_slug_and_only_agents_with_sessions(world):
    room = create_room(world.agent_a)
    assert len(room["slug"]) == 12 and room["slug"][3] == room["slug"][8] == "-"
    assert room["ministry"] == "alpha" and room["owner"] == world.agent_a.email
    token = client_with_token(world.admin_a, world.a, "ministry_admin")
    assert token.post("/api/v1/rooms/", {"name": "x"}, format="json").status_code == 403
    bad = client_as(world.agent_a).post(
        "/api/v1/rooms/", {"name": "", "expected_size": 5000}, format="json"
    )
    assert bad.status_code == 400 and {"name", "expected_size"} & set(bad.json())
    assert Room.objects.count() == 1


def test_join_gives_a_token_the_sdk_accepts(world):
    node = MediaNodeFactory(name="paris-1", region="paris")
    world.agent_a.sub = "sub-agent-a"
    world.agent_a.save()
    room = create_room(world.agent_a)
    answer = join(world.agent_a, room["slug"], region="paris")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["node_url"] == node.url
    claims = lk.TokenVerifier(node.api_key, node.api_secret).verify(body["token"])
    assert claims.identity == "sub-agent-a"
    assert claims.video.room == room["slug"] and claims.video.room_join
    assert claims.video.room_admin  # the owner hosts
    with pytest.raises(Exception):
        lk.TokenVerifier(node.api_key, "another-secret".ljust(40, "y")).verify(body["token"])
    colleague = join(world.admin_a, room["slug"]).json()
    colleague_claims = lk.TokenVerifier(node.api_key, node.api_secret).verify(colleague["token"])
    assert not colleague_claims.video.room_admin
    assert colleague_claims.identity == str(world.admin_a.pk)  # before their first login
    assert Allocation.objects.filter(closed_at__isnull=True).count() == 1


@pytest.mark.parametrize(
    ("access", "outsider_may"), [("public", True), ("ministry", False), ("invited", False)]
)
def test_access_levels(world, access, outsider_may):
    MediaNodeFactory(name="n1")
    room = create_room(world.agent_a, access=access)
    outsider = join(world.agent_b, room["slug"])
    assert (outsider.status_code == 200) is outsider_may
    colleague = join(world.admin_a, room["slug"])
    assert (colleague.status_code == 200) is (access != "invited")
    client_as(world.agent_a).post(
        f"/api/v1/rooms/{room['slug']}/invite/", {"emails": [world.agent_b.email]}, format="json"
    )
    assert join(world.agent_b, room["slug"]).status_code == 200


def test_no_node_answers_503_with_a_clear_message(world):
    room = create_room(world.agent_a)
    answer = client_as(world.agent_a).post(
        f"/api/v1/rooms/{room['slug']}/join/", {}, format="json", HTTP_ACCEPT_LANGUAGE="fr"
    )
    assert answer.status_code == 503
    assert "serveur" in answer.json()["detail"]


def test_join_moves_a_room_whose_node_died(world):
    first = MediaNodeFactory(name="first")
    room = create_room(world.agent_a)
    assert join(world.agent_a, room["slug"]).json()["node_url"] == first.url
    second = MediaNodeFactory(name="second")
    MediaNode.objects.filter(pk=first.pk).update(is_up=False)
    again = join(world.agent_a, room["slug"]).json()
    assert again["node_url"] == second.url
    closed = Allocation.objects.get(node=first)
    assert closed.close_reason == "node_down"


def test_owner_renames_and_deletes_others_cannot(world):
    MediaNodeFactory(name="n1")
    room = create_room(world.agent_a)
    url = f"/api/v1/rooms/{room['slug']}/"
    assert client_as(world.agent_b).patch(url, {"name": "x"}, format="json").status_code == 404
    colleague = client_as(world.auditor_a).patch(url, {"name": "x"}, format="json")
    assert colleague.status_code == 403
    renamed = client_as(world.agent_a).patch(url, {"name": "Nouveau nom"}, format="json")
    assert renamed.json()["name"] == "Nouveau nom"
    join(world.agent_a, room["slug"])
    assert client_as(world.agent_a).delete(url).status_code == 204
    assert Allocation.objects.get().close_reason == "room_deleted"
    assert MediaNode.objects.get().reserved_participants == 0
    assert join(world.agent_a, room["slug"]).status_code == 404


def test_media_nodes_api_is_for_operators_and_never_shows_secrets(world):
    node = MediaNodeFactory(name="n1")
    for caller in (world.admin_a, world.national_auditor, world.agent_a):
        assert client_as(caller).get("/api/v1/media-nodes/").status_code == 403
    listed = client_as(world.operator).get("/api/v1/media-nodes/").json()
    assert listed["results"][0]["name"] == "n1"
    assert "secret" not in str(listed) and node.api_secret not in str(listed)
    unreachable = client_as(world.operator).post(
        "/api/v1/media-nodes/",
        {
            "name": "ghost",
            "url": "http://127.0.0.1:9/",
            "api_key": "k",
            "api_secret": "s3cr3t-value".ljust(40, "z"),
            "region": "paris",
            "capacity": 100,
        },
        format="json",
    )
    assert unreachable.status_code == 400
    assert "url" in unreachable.json()
    short = client_as(world.operator).post(
        "/api/v1/media-nodes/",
        {
            "name": "weak",
            "url": "http://127.0.0.1:9/",
            "api_key": "k",
            "api_secret": "short",
            "region": "paris",
            "capacity": 10,
        },
        format="json",
    )
    assert short.status_code == 400 and "api_secret" in short.json()
    assert "s3cr3t-value" not in unreachable.content.decode()
    assert not MediaNode.objects.filter(name="ghost").exists()


def test_cordon_drain_enable_and_remove_refused_while_live(world):
    node = MediaNodeFactory(name="n1")
    operator = client_as(world.operator)
    room = create_room(world.agent_a)
    join(world.agent_a, room["slug"])
    assert operator.post("/api/v1/media-nodes/n1/cordon/").json()["state"] == "cordoned"
    other = create_room(world.agent_a)
    assert join(world.agent_a, other["slug"]).status_code == 503  # no new rooms
    drained = operator.post(
        "/api/v1/media-nodes/n1/drain/", {"deadline_minutes": 30}, format="json"
    )
    assert drained.json()["state"] == "draining" and drained.json()["drain_deadline"]
    refused = operator.delete("/api/v1/media-nodes/n1/")
    assert refused.status_code == 400 and "1" in str(refused.json())
    assert operator.post("/api/v1/media-nodes/n1/enable/").json()["state"] == "active"
    client_as(world.agent_a).delete(f"/api/v1/rooms/{room['slug']}/")
    assert operator.delete("/api/v1/media-nodes/n1/").status_code == 204
    assert not MediaNode.objects.filter(pk=node.pk).exists()
    assert client_as(world.admin_a).post("/api/v1/media-nodes/n1/cordon/").status_code in (403, 404)


def test_join_answers_202_while_the_room_is_being_placed(world, monkeypatch):
    from rooms.api import RoomViewSet

    MediaNodeFactory(name="slow")
    room = create_room(world.agent_a)
    # The placement task has not answered within JOIN_WAIT_SECONDS.
    monkeypatch.setattr(RoomViewSet, "_place", staticmethod(lambda room, region: {}))
    pending = join(world.agent_a, room["slug"])
    assert pending.status_code == 202
    assert pending.json()["poll"].endswith(f"/api/v1/rooms/{room['slug']}/join/")
    assert pending["Retry-After"] == "1"
    monkeypatch.undo()
    assert join(world.agent_a, room["slug"]).status_code == 200


def test_join_while_the_placement_queue_is_unreachable_is_retryable_and_kept(
    world, monkeypatch, settings
):
    """Redis down: a join gets 503 with Retry-After and a message in the caller's
    language (never a 500), and its request stays in the database for beat."""
    import redis

    from media_nodes import queueing
    from media_nodes.models import PlacementRequest

    MediaNodeFactory(name="n1")
    room = create_room(world.agent_a)
    settings.PLACEMENT_SWEEP_EVERY_SECONDS = 5
    dead = redis.Redis(port=1, socket_connect_timeout=0.2)  # nothing listens there
    monkeypatch.setattr(queueing, "coalescing", lambda: True)
    monkeypatch.setattr(queueing, "client", lambda: dead)
    answer = join(world.agent_a, room["slug"])
    assert answer.status_code == 503 and answer["Retry-After"] == "5"
    assert answer.json()["code"] == "placement_unavailable"
    assert answer.json()["detail"].startswith("Meetings cannot be started for a moment")
    french = client_as(world.agent_a).post(
        f"/api/v1/rooms/{room['slug']}/join/", {}, format="json", HTTP_ACCEPT_LANGUAGE="fr"
    )
    assert french.status_code == 503
    assert french.json()["detail"].startswith("Les réunions ne peuvent pas démarrer")
    assert PlacementRequest.objects.filter(room__slug=room["slug"]).count() == 1
    assert not Allocation.objects.exists()


def test_no_node_answers_503_with_retry_after(world):
    """No node can host the meeting: 503, its reason, and when to try again."""
    MediaNodeFactory(name="n1", state="cordoned")
    room = create_room(world.agent_a)
    answer = join(world.agent_a, room["slug"])
    assert answer.status_code == 503 and answer["Retry-After"] == "60"
    assert answer.json()["code"] == "no_node"
