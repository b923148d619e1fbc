"""The Celery application, with the house defaults for every task.

Tasks are acknowledged late (a worker that dies mid-task gets it delivered
again), have soft and hard time limits and bounded retries, and run on one
queue per kind of work (see ``CELERY_QUEUES`` in settings).
"""

import os

from celery import Celery, Task
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

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


# Liveness files for the Kubernetes probes of workers and beat (HEARTBEAT_FILE).
from controlplane import heartbeat  # noqa: E402, F401
