"""Liveness files of Celery workers and beat, read by Kubernetes exec probes.

A worker touches ``HEARTBEAT_FILE`` when ready and then on each of its event
heartbeats (every 2 s, from the consumer's loop, so a wedged or disconnected
consumer stops touching it); beat touches it on every scheduler tick. The probe
only looks at the file's age (``find FILE -mmin -2``, see deploy/k8s), which costs
nothing, where ``celery inspect ping`` would start Django and broadcast to every
worker on each probe. Without ``HEARTBEAT_FILE`` (tests, the demo) nothing is written.

The variable is read from the environment, not Django settings: the probe command
reads the same variable and has no Django to ask.
"""

import os
from pathlib import Path

from celery.beat import PersistentScheduler
from celery.signals import heartbeat_sent, worker_ready


def heartbeat_touch() -> None:
    """Mark this process alive now (nothing when ``HEARTBEAT_FILE`` is unset)."""
    path = os.environ.get("HEARTBEAT_FILE", "")
    if path:
        Path(path).touch()


def _on_worker_ready(**kwargs) -> None:
    heartbeat_touch()


def _on_heartbeat_sent(**kwargs) -> None:
    heartbeat_touch()


def heartbeat_signals_connect() -> None:
    """Touch the file when a worker is ready and at each of its event heartbeats
    (called by ``ControlplaneConfig.ready``; connecting twice changes nothing)."""
    worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="heartbeat_ready")
    heartbeat_sent.connect(_on_heartbeat_sent, weak=False, dispatch_uid="heartbeat_sent")


class HeartbeatScheduler(PersistentScheduler):
    """Beat's usual scheduler, marking beat alive at each tick (at least every few
    seconds: the node probe is scheduled every ``MEDIA_NODE_PROBE_EVERY_SECONDS``)."""

    def tick(self, *args, **kwargs):
        heartbeat_touch()
        return super().tick(*args, **kwargs)
