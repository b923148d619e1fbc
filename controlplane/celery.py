"""The Celery application, with the house defaults for every task.

Tasks are acknowledged late (a worker that dies mid-task gets it delivered
again), have soft and hard time limits and bounded retries, and run on one
queue per kind of work (see ``CELERY_QUEUES`` in settings).

Redis URLs use the transport of ``controlplane.broker`` (kombu's, fixed so that a
worker whose Redis restarts reconnects instead of stopping).

Workers log through the project's ``LOGGING`` (JSON in production) at the level
given by ``--loglevel``, and carry the request id of the request that queued a
task (``controlplane.logs``). With ``CELERY_METRICS_PORT`` set, the worker's main
process serves its Prometheus metrics (``controlplane.metrics``).
"""

import logging
import logging.config
import os

from celery import Celery, Task, signals
from django.conf import settings
from kombu import Queue

from controlplane import broker, logs, metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
broker.transport_register()  # before any connection is made

app = Celery("controlplane", task_cls="controlplane.celery:BaseTask")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_configure.connect
def _configure(sender, **kwargs):
    """Apply the house task defaults once Django settings are readable."""
    sender.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="default",
        task_queues=[Queue(name) for name in settings.CELERY_QUEUES],
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        # Tasks running when the broker connection drops run to the end: their work is
        # in PostgreSQL and idempotent; killing them would only waste it. (Their acks
        # are lost with the connection: a message Redis still holds is delivered again
        # later, and the task finds its work done.) Celery 6 flips the default, and 5.x
        # warns at every reconnect until it is set.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_eager_propagates=True,
        task_annotations={"*": {"max_retries": settings.CELERY_TASK_MAX_RETRIES}},
    )


app.autodiscover_tasks()


class BaseTask(Task):
    """Base class of every task: bounded retries with exponential backoff.

    Only errors listed in ``autoretry_for`` by a task are retried; a task
    lists transient errors there (network, lock timeouts), never bugs.
    """

    abstract = True
    acks_late = True
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True


# -- The broker's visibility timeout must outlast every task a worker consumes ---------


def visibility_timeout_too_short(queues) -> list[str]:
    """The tasks routed to ``queues`` that could be delivered twice: on Redis, a
    message taken by a worker comes back after the visibility timeout even while its
    task still runs (or waits for its retry), so the timeout must be above the task's
    hard time limit plus a retry's longest countdown. One line per such task."""
    timeout = settings.CELERY_VISIBILITY_TIMEOUT_SECONDS
    countdown = BaseTask.retry_backoff_max
    app.loader.import_default_modules()  # every app's tasks (a worker has them already)
    too_short = []
    for name in sorted(app.tasks):
        if name.startswith("celery."):
            continue
        if app.amqp.router.route({}, name)["queue"].name not in queues:
            continue
        limit = app.tasks[name].time_limit or app.conf.task_time_limit or 0
        if limit + countdown >= timeout:
            too_short.append(
                f"{name}: hard time limit {limit} s + retry countdown {countdown} s "
                f">= CELERY_VISIBILITY_TIMEOUT_SECONDS ({timeout} s)"
            )
    return too_short


@signals.celeryd_after_setup.connect
def _refuse_a_short_visibility_timeout(sender=None, instance=None, **kwargs):
    """A worker does not start when a task it consumes would run twice."""
    if not settings.CELERY_VISIBILITY_TIMEOUT_CHECK:
        return
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return
    queues = set(instance.app.amqp.queues.consume_from)
    too_short = visibility_timeout_too_short(queues)
    if too_short:
        # SystemExit, not an exception: Celery logs and swallows those raised by signals.
        raise SystemExit(
            "Refusing to start: raise CELERY_VISIBILITY_TIMEOUT_SECONDS above these "
            "tasks' hard time limit plus a retry's countdown, or they run twice: "
            + "; ".join(too_short)
        )


# -- Logs: the project's format, and the request id carried into tasks --------------


@signals.setup_logging.connect
def _setup_logging(loglevel=None, **kwargs):
    """Use the project's LOGGING (JSON in production) instead of Celery's own format."""
    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.before_task_publish.connect
def _request_id_to_headers(headers=None, **kwargs):
    """A task queued while serving a request (or another task) carries its id."""
    request_id = logs.request_id_get()
    if request_id and headers is not None:
        headers.setdefault("request_id", request_id)


@signals.task_prerun.connect
def _request_id_from_headers(task=None, **kwargs):
    """The worker logs a task's lines with the id of the request that queued it."""
    if task is None or task.request.is_eager:
        return  # run inline: the request's own id is already current
    request_id = getattr(task.request, "request_id", None) or (
        (task.request.headers or {}).get("request_id")
    )
    task.request.request_id_token = logs.request_id_set(request_id or None)


@signals.task_postrun.connect
def _request_id_restore(task=None, **kwargs):
    token = getattr(task.request, "request_id_token", None) if task is not None else None
    if token is not None:
        task.request.request_id_token = None
        logs.request_id_reset(token)


# -- Metrics: a worker serves the counters of its pool's processes -------------------


@signals.worker_ready.connect
def _serve_metrics(**kwargs):
    if settings.CELERY_METRICS_PORT:
        metrics.worker_metrics_serve(
            port=settings.CELERY_METRICS_PORT, addr=settings.CELERY_METRICS_ADDR
        )
