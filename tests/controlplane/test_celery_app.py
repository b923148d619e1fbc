"""The Celery app carries the house task defaults and one queue per kind of work."""

from celery import beat
from django.conf import settings

from controlplane.celery import app


def test_task_defaults_follow_the_house_style():
    """Late acks, re-delivery on worker loss, time limits, bounded retries."""
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_annotations["*"]["max_retries"] == settings.CELERY_TASK_MAX_RETRIES


def test_one_queue_per_kind_of_work():
    """Every queue named in settings is declared, and tasks are routed to their queue."""
    assert {q.name for q in app.conf.task_queues} == set(settings.CELERY_QUEUES)
    router = app.amqp.router
    route = router.route({}, "audit.tasks.audit_chain_verify_task")
    assert route["queue"].name == "audit"
    assert router.route({}, "media_nodes.tasks.room_allocate")["queue"].name == "allocation"


def test_beat_verifies_the_audit_chain():
    """Beat schedules the audit-chain verification."""
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "audit.tasks.audit_chain_verify_task" in tasks


def test_beat_sweeps_placement_requests_on_the_allocation_queue():
    """Beat asks again for placements Redis lost, on the allocation workers."""
    entries = [
        entry
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "media_nodes.tasks.room_placement_sweep"
    ]
    assert len(entries) == 1
    assert entries[0]["schedule"] == settings.PLACEMENT_SWEEP_EVERY_SECONDS
    route = app.amqp.router.route({}, "media_nodes.tasks.room_placement_sweep")
    assert route["queue"].name == "allocation"
    from media_nodes.tasks import room_placement_sweep

    assert room_placement_sweep.name == entries[0]["task"]


def test_unacknowledged_messages_come_back_after_the_visibility_timeout():
    """A killed worker's messages are delivered again after the configured timeout,
    looked for often enough for that timeout to mean something."""
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == settings.CELERY_VISIBILITY_TIMEOUT_SECONDS
    sweep_period = options["unacked_restore_interval"] * options["unacked_restore_throttle"]
    assert 1 <= sweep_period <= max(1, options["visibility_timeout"] / 10)


def test_beat_sends_its_tasks_without_waiting_on_the_result_store(monkeypatch):
    """Beat reads no result, so it sends its tasks without subscribing to one first (while
    Redis was away, that subscription held beat up to 20 s per task, every other entry
    with it); a task sent with a result would subscribe."""
    subscribed = []
    app.conf.task_always_eager = False  # sent, as beat does (``eager_celery`` resets it)
    monkeypatch.setattr(
        type(app.backend), "on_task_call", lambda self, producer, task_id: subscribed.append(1)
    )
    scheduler = beat.Scheduler(app, lazy=True)
    entries = [
        beat.ScheduleEntry(name=name, app=app, **entry)
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
    ]
    with app.connection_for_write("memory://") as connection:
        producer = app.amqp.Producer(connection)
        for entry in entries:
            scheduler.apply_async(entry, producer=producer, advance=False)
        assert subscribed == []
        with_result = beat.ScheduleEntry(name="control", task=entries[0].task, app=app)
        scheduler.apply_async(with_result, producer=producer, advance=False)
        assert subscribed == [1]


def test_tasks_running_when_the_broker_connection_drops_run_to_the_end():
    """Their work is in PostgreSQL and idempotent: a broker reconnect does not kill them."""
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is False


def test_a_visibility_timeout_shorter_than_a_task_is_named(settings):
    """Every task of the consumed queues whose hard limit plus a retry's countdown
    reaches the visibility timeout is named; other queues' tasks are not."""
    from controlplane.celery import visibility_timeout_too_short

    settings.CELERY_VISIBILITY_TIMEOUT_SECONDS = 3600
    assert visibility_timeout_too_short({"reports", "allocation", "default"}) == []
    settings.CELERY_VISIBILITY_TIMEOUT_SECONDS = 3300 + 60  # retention: 3,300 s + 60 s
    (line,) = visibility_timeout_too_short({"reports"})
    assert line.startswith("usage.tasks.usage_retention: hard time limit 3300 s")
    assert visibility_timeout_too_short({"health", "audit"}) == []


def test_a_worker_refuses_to_start_on_a_short_visibility_timeout():
    """A real worker consuming the reports queue exits at once, naming the task that
    would run twice, instead of starting."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CELERY_VISIBILITY_TIMEOUT_SECONDS": "1000",
    }
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--pool", "solo"]
        + ["--queues", "reports", "--without-gossip", "--without-mingle"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode != 0
    assert "usage.tasks.usage_retention: hard time limit 3300 s" in worker.stderr
    assert "usage.tasks.monthly_reports: hard time limit 960 s" in worker.stderr
    assert "usage.tasks.usage_rollup" not in worker.stderr  # 600 s + 60 s: it fits
