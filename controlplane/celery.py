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
from kombu import Queue

from controlplane import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
broker.transport_register()  # before any connection is made

app = Celery("controlplane", task_cls="controlplane.celery:BaseTask")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_configure.connect
def _configure(sender, **kwargs):
    """Apply the house task defaults once Django settings are readable."""
    from django.conf import settings

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


# -- Logs: the project's format, and the request id carried into tasks --------------


@signals.setup_logging.connect
def _setup_logging(loglevel=None, **kwargs):
    """Use the project's LOGGING (JSON in production) instead of Celery's own format."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.before_task_publish.connect
def _request_id_to_headers(headers=None, **kwargs):
    """A task queued while serving a request (or another task) carries its id."""
    from controlplane import logs

    request_id = logs.request_id_get()
    if request_id and headers is not None:
        headers.setdefault("request_id", request_id)


@signals.task_prerun.connect
def _request_id_from_headers(task=None, **kwargs):
    """The worker logs a task's lines with the id of the request that queued it."""
    from controlplane import logs

    if task is None or task.request.is_eager:
        return  # run inline: the request's own id is already current
    request_id = getattr(task.request, "request_id", None) or (
        (task.request.headers or {}).get("request_id")
    )
    task.request.request_id_token = logs.request_id_set(request_id or None)


@signals.task_postrun.connect
def _request_id_restore(task=None, **kwargs):
    from controlplane import logs

    token = getattr(task.request, "request_id_token", None) if task is not None else None
    if token is not None:
        task.request.request_id_token = None
        logs.request_id_reset(token)


# -- Metrics: a worker serves the counters of its pool's processes -------------------


@signals.worker_ready.connect
def _serve_metrics(**kwargs):
    from django.conf import settings

    if settings.CELERY_METRICS_PORT:
        from controlplane import metrics

        metrics.worker_metrics_serve(
            port=settings.CELERY_METRICS_PORT, addr=settings.CELERY_METRICS_ADDR
        )


# Liveness files for the Kubernetes probes of workers and beat (HEARTBEAT_FILE).
from controlplane import heartbeat  # noqa: E402, F401
