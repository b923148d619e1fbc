"""gunicorn settings of the web image (deploy/Dockerfile).

Every value can be changed from the environment without rebuilding the image. The
defaults suit one pod behind the Kubernetes Service and the ingress controller:
a few processes with a few threads each, recycled now and then, logging to stdout.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")  # noqa: S104 - inside a pod
# Processes per pod. Kubernetes shows a pod the node's cores, not its CPU limit, so
# the count is set here (WEB_CONCURRENCY, as gunicorn reads it), not derived.
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A request taking longer is a bug or a dead dependency: exports stream, imports and
# reports run in Celery.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Kubernetes waits terminationGracePeriodSeconds (30 s) after SIGTERM: finish before.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
# Longer than the load balancer's idle timeout (60 s), so it never reuses a
# connection gunicorn is closing.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "500"))
# Worker heartbeat files on a memory filesystem (the root filesystem is read-only).
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR", "/dev/shm")  # noqa: S108
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
# The path without its query string: filters may carry e-mail addresses.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")


# Prometheus' multiprocess mode (controlplane/metrics.py): PROMETHEUS_MULTIPROC_DIR is
# the pod's emptyDir (deploy/k8s/base/web.yaml) where every worker process writes its
# counters. Both hooks run in the arbiter, which never imports the app.


def on_starting(server):
    """Start from an empty metrics directory, as prometheus_client asks: a container
    restart keeps the pod's emptyDir, whose files of the previous run would otherwise
    pile up for the pod's life. Created if missing (a plain /tmp, outside Kubernetes)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))


def child_exit(server, worker):
    """Forget a dead worker's live gauges (its counters stay: they still count)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
