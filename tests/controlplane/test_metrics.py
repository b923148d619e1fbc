"""/metrics: request and service counters, state read at scrape time, who may scrape,
and the multiprocess mode that gathers gunicorn's and Celery's processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from accounts.models import Agent
from media_nodes import queueing
from media_nodes.models import MediaNode
from tests.factories import AgentFactory, AgentImportJobFactory, MediaNodeFactory
from tests.support.clients import client_as
from tests.support.metrics import parse, value
from tests.support.skips import requires_redis
from tests.support.webhooks import deliver, make_event, post

ROOT = Path(__file__).resolve().parents[2]


def scrape(client, **extra) -> dict:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


@pytest.mark.django_db(transaction=True)
def test_a_login_and_an_allocation_are_counted(rp, live_server):
    """After a ProConnect login and a room placement, a scrape over HTTP counts both,
    with the allocation's latency and the callback's request."""

    def over_http() -> dict:
        response = requests.get(f"{live_server.url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return parse(response.text)

    before = over_http()
    agent = AgentFactory(email="jeanne.martin@alpha.gouv.fr", ministry=rp.alpha, imported=True)
    assert rp.browser().login(agent.email).url.endswith("/console/")
    MediaNodeFactory(name="paris-1", region="paris")
    client = client_as(Agent.objects.get(pk=agent.pk))
    room = client.post("/api/v1/rooms/", {"name": "Point", "expected_size": 5}, format="json")
    assert room.status_code == 201, room.content
    joined = client.post(f"/api/v1/rooms/{room.json()['slug']}/join/", {}, format="json")
    assert joined.status_code == 200, joined.content
    after = over_http()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("visio_logins_total", outcome="success", reason="") == 1
    assert delta("visio_allocations_total", outcome="placed") == 1
    assert delta("visio_allocation_seconds_count", outcome="placed") == 1
    assert delta("visio_allocation_seconds_sum", outcome="placed") > 0
    callback = {"method": "GET", "view": "oidc_authentication_callback", "status": "302"}
    assert delta("visio_http_requests_total", **callback) == 1
    assert delta("visio_http_requests_total", method="POST", view="room-join", status="200") == 1
    assert value(after, "visio_live_allocations") == 1
    assert value(after, "visio_media_nodes", state="active", health="up") == 1


@pytest.mark.django_db
def test_refused_logins_are_counted_by_reason(client):
    """A callback without a state the session knows counts as refused, state_mismatch."""
    before = scrape(client)
    response = client.get("/oidc/callback/", {"code": "x", "state": "y"})
    assert response.status_code == 400
    after = scrape(client)
    labels = {"outcome": "refused", "reason": "state_mismatch"}
    assert (
        value(after, "visio_logins_total", **labels) - value(before, "visio_logins_total", **labels)
        == 1
    )


@pytest.mark.django_db
def test_request_metrics_name_the_route_not_the_path(client, world):
    """Two agents' detail pages count under one view label; unknown paths as unmatched."""
    api = client_as(world.operator)
    before = scrape(client)
    for agent in (world.agent_a, world.agent_b):
        assert api.get(f"/api/v1/agents/{agent.pk}/").status_code == 200
    assert client.get("/no/such/page/").status_code == 404
    after = scrape(client)
    detail = {"method": "GET", "view": "agent-detail", "status": "200"}
    assert (
        value(after, "visio_http_requests_total", **detail)
        - value(before, "visio_http_requests_total", **detail)
        == 2
    )
    unmatched = {"method": "GET", "view": "unmatched", "status": "404"}
    assert (
        value(after, "visio_http_requests_total", **unmatched)
        - value(before, "visio_http_requests_total", **unmatched)
        == 1
    )
    assert not [key for key in after if str(world.agent_a.pk) in str(key)]


@requires_redis
@pytest.mark.django_db
def test_state_is_read_at_scrape_time(client, world):
    """Nodes by state and health, import jobs by state and queue depths come from the
    database and Redis when scraped, whichever process answers."""
    MediaNodeFactory(name="paris-1")
    MediaNodeFactory(name="paris-2", state=MediaNode.State.DRAINING)
    MediaNodeFactory(name="lyon-1", is_up=False)
    for state in ("pending", "running", "running", "failed"):
        AgentImportJobFactory(ministry=world.a, state=state)
    r = queueing.client()
    r.delete(queueing.PENDING)
    r.rpush(queueing.PENDING, "a|paris|n1", "b||n2")
    try:
        samples = scrape(client)
    finally:
        r.delete(queueing.PENDING)
    assert value(samples, "visio_media_nodes", state="active", health="up") == 1
    assert value(samples, "visio_media_nodes", state="draining", health="up") == 1
    assert value(samples, "visio_media_nodes", state="active", health="down") == 1
    assert value(samples, "visio_media_nodes", state="cordoned", health="up") == 0
    assert value(samples, "visio_agent_import_jobs", state="running") == 2
    assert value(samples, "visio_agent_import_jobs", state="done") == 0
    assert value(samples, "visio_allocation_pending") == 2
    assert ("visio_celery_queue_length", frozenset({("queue", "allocation")})) in samples
    assert value(samples, "visio_metrics_source_up", source="database") == 1
    assert value(samples, "visio_metrics_source_up", source="redis") == 1


@pytest.mark.django_db
def test_an_unreachable_redis_is_reported_not_fatal(client, settings):
    """A scrape still answers when Redis is down, and says so."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    samples = scrape(client)
    assert value(samples, "visio_metrics_source_up", source="redis") == 0
    assert value(samples, "visio_metrics_source_up", source="database") == 1


@pytest.mark.django_db
def test_metrics_are_not_for_the_internet(client, settings):
    """Only loopback (by default) or the bearer token may scrape; a request relayed by
    the load balancer is refused even from an allowed address."""
    outsider = client.get("/metrics", REMOTE_ADDR="203.0.113.7")
    assert outsider.status_code == 403
    assert "visio_" not in outsider.content.decode()
    relayed = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert relayed.status_code == 403
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics").status_code == 403  # 127.0.0.1 no longer listed
    settings.METRICS_TOKEN = "a-long-random-metrics-token-for-prometheus"
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    good = client.get(
        "/metrics",
        REMOTE_ADDR="203.0.113.7",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
        HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}",
    )
    assert good.status_code == 200 and b"visio_http_requests_total" in good.content


@pytest.mark.django_db
def test_multiprocess_mode_sums_every_process(client, tmp_path, monkeypatch):
    """With PROMETHEUS_MULTIPROC_DIR, a scrape adds up the counters of other processes
    (gunicorn workers, Celery pool processes) written to that directory."""
    script = (
        "from media_nodes import metrics; import time; "
        "metrics.allocation_observe('placed', time.perf_counter())"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape(client)
    assert value(samples, "visio_allocations_total", outcome="placed") == 2
    assert value(samples, "visio_allocation_seconds_count", outcome="placed") == 2
    assert value(samples, "visio_media_nodes", state="active", health="up") == 0  # state too


@pytest.mark.django_db
def test_finished_imports_are_counted_with_their_rows(client, world, upload):
    """A preview and an applied import count as finished jobs, and their rows by action."""
    before = scrape(client)
    admin = client_as(world.admin_a)
    assert upload(admin).json()["state"] == "done"
    assert upload(admin, apply=True).json()["state"] == "done"
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("visio_agent_import_jobs_finished_total", state="done", mode="preview") == 1
    assert delta("visio_agent_import_jobs_finished_total", state="done", mode="apply") == 1
    assert delta("visio_agent_import_rows_total", action="create", mode="apply") == 1
    assert delta("visio_agent_import_rows_total", action="error", mode="apply") == 1
    assert value(after, "visio_agent_import_jobs", state="done") == 2


@pytest.mark.django_db
def test_webhooks_are_counted_by_event_and_outcome(client, world):
    """A signed room_started is counted as processed, its replay as duplicate, and an
    unsigned delivery as refused (401) before its event is known."""
    node = MediaNodeFactory(name="paris-1")
    event = make_event("room_started", room_name="abc-defg-hij")
    before = scrape(client)
    assert deliver(event, node).status_code == 200
    assert deliver(event, node).status_code == 200
    assert post("{}", auth="").status_code == 401
    after = scrape(client)

    def delta(**labels):
        name = "visio_livekit_webhooks_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(event="room_started", outcome="processed") == 1
    assert delta(event="room_started", outcome="duplicate") == 1
    assert delta(event="unknown", outcome="401") == 1
