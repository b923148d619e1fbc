"""Redis restarted during a burst of joins: the app under gunicorn, a real worker and
beat, all on a private Redis that the test kills and starts again (the machine's
shared Redis is never touched)."""

import queue
import threading
import time
from dataclasses import dataclass

import pytest

from media_nodes.models import Allocation, MediaNode, PlacementRequest
from tests.factories import AgentFactory, MediaNodeFactory, RoomFactory
from tests.reliability.processes import agent_session, celery_beat, wait_for, web_server
from tests.workers import celery_worker, errors, output

pytestmark = pytest.mark.integration

ROOMS, AGENTS = 100, 6
UNAVAILABLE = {
    "en": "Meetings cannot be started for a moment",
    "fr": "Les réunions ne peuvent pas démarrer pour le moment",
}


@dataclass
class Answer:
    slug: str
    language: str
    status: int
    retry_after: str | None
    body: dict


def placed_rooms() -> int:
    return Allocation.objects.filter(closed_at__isnull=True).values("room").distinct().count()


@pytest.mark.django_db(transaction=True)
def test_redis_restarted_during_a_burst_of_joins_loses_no_request(world, private_redis, tmp_path):
    """Promise: Redis restarted during a burst of joins: each join succeeds or gets a
    clear retryable error, and no allocation request is lost (work recorded in the
    database is picked up again by a beat task)."""
    nodes = [MediaNodeFactory(name=f"burst-node-{i}", capacity=1000) for i in range(3)]
    rooms = [
        RoomFactory(slug=f"burst-{i:03d}", name="r", owner=world.agent_a) for i in range(ROOMS)
    ]
    languages = ["en", "fr"] * (AGENTS // 2)
    sessions = [
        (agent_session(AgentFactory(ministry=world.a), language), language)
        for language in languages
    ]
    env = {
        "CELERY_BROKER_URL": private_redis.url(),
        "CELERY_RESULT_BACKEND": private_redis.url(),
        "JOIN_WAIT_SECONDS": "1",
        "PLACEMENT_SWEEP_EVERY_SECONDS": "1",
    }
    todo: queue.Queue = queue.Queue()
    for room in rooms:
        todo.put(room.slug)
    answers: list[Answer] = []
    failures: list[Exception] = []

    def agent(session, language):
        """One join per room taken from the burst, at an agent's pace; never retried."""
        try:
            while True:
                try:
                    slug = todo.get_nowait()
                except queue.Empty:
                    return
                response = session.post(f"{base}/api/v1/rooms/{slug}/join/", timeout=60)
                body = response.json() if "json" in response.headers["Content-Type"] else {}
                answers.append(
                    Answer(
                        slug,
                        language,
                        response.status_code,
                        response.headers.get("Retry-After"),
                        body,
                    )
                )
                time.sleep(0.1)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def unavailable() -> int:
        return sum(a.status == 503 for a in answers)

    with (
        web_server(env) as web,
        celery_beat(env, tmp_path, loglevel="INFO") as beat,
        celery_worker(queues="allocation", concurrency=2, name="burst", env=env) as worker,
    ):
        base = web.wait()
        threads = [threading.Thread(target=agent, args=s) for s in sessions]
        for thread in threads:
            thread.start()
        assert wait_for(lambda: len(answers) >= ROOMS // 4, 60)
        private_redis.kill()  # mid-burst: every key, queued message and in-flight request gone
        wait_for(lambda: unavailable() >= 10 or todo.empty(), 30)
        private_redis.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failures, failures[:3]
        assert len(answers) == ROOMS
        # The worker reconnected, whatever it was running (it once stopped for good here).
        assert "Unrecoverable error" not in output(worker), errors(worker)

        # Each join succeeded, or got an answer a client acts on: never a 500.
        assert {a.status for a in answers} <= {200, 202, 503}, [a.status for a in answers]
        refused = [a for a in answers if a.status == 503]
        assert refused, "no join met the outage"
        for a in refused:
            assert a.retry_after and int(a.retry_after) >= 1
            assert a.body["code"] == "placement_unavailable"
            assert a.body["detail"].startswith(UNAVAILABLE[a.language]), a.body
        assert all(a.retry_after for a in answers if a.status == 202)

        # No request lost: with no further join, beat's sweep has every room placed,
        # including those whose only join was refused while Redis was down.
        settled = wait_for(
            lambda: placed_rooms() == ROOMS and not PlacementRequest.objects.exists(), 90
        )
        assert settled, (placed_rooms(), errors(worker), output(beat)[-2000:])
        # The agents' next calls get in.
        session, _ = sessions[0]
        for slug in {a.slug for a in refused}:
            answer = session.post(f"{base}/api/v1/rooms/{slug}/join/", timeout=60)
            assert answer.status_code == 200 and answer.json()["node_url"], answer.text

    live = Allocation.objects.filter(closed_at__isnull=True)
    assert Allocation.objects.count() == live.count() == ROOMS  # exactly one each
    for node in MediaNode.objects.filter(pk__in=[n.pk for n in nodes]):
        assert node.reserved_participants == 10 * live.filter(node=node).count()
