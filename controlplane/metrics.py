"""Prometheus metrics: ``/metrics`` on the web processes, a small endpoint on workers.

Counters and histograms live in the process that moves them (a gunicorn worker, a
Celery pool process). With ``PROMETHEUS_MULTIPROC_DIR`` set (before Python starts),
prometheus_client writes them to files in that directory and a scrape sums every
process's files, so whichever process answers gives the whole pod's figures.

Figures that describe the database or Redis (nodes by state and health, live
allocations, import jobs by state, queue depths) are not kept in any process: the
``StateCollector`` reads them at scrape time, so they are right whoever answers.

``/metrics`` is not for the internet: it answers a bearer ``METRICS_TOKEN``, or a
direct request (no ``X-Forwarded-For``/``Forwarded``: nothing that came through the
load balancer) from ``METRICS_ALLOWED_NETWORKS``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer

from controlplane.broker import broker_redis

logger = logging.getLogger(__name__)

HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

HTTP_REQUESTS = Counter(
    "visio_http_requests_total",
    "HTTP requests answered, by method, view (the URL pattern's name) and status",
    ["method", "view", "status"],
)
HTTP_SECONDS = Histogram(
    "visio_http_request_seconds",
    "Time to answer an HTTP request, by method and view",
    ["method", "view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMITED = Counter(
    "visio_rate_limited_total", "Requests refused with 429, by rate limit", ["limit"]
)


def _view_label(request) -> str:
    """A bounded label: the URL pattern's name, never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.view_name  # the pattern's name, or the view's dotted path
    if request.path_info.startswith(settings.STATIC_URL):
        return "static"
    return "unmatched"


class RequestMetricsMiddleware:
    """Counts every answer by method, view and status, and times it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in HTTP_METHODS else "other"
        view = _view_label(request)
        HTTP_REQUESTS.labels(method=method, view=view, status=str(response.status_code)).inc()
        HTTP_SECONDS.labels(method=method, view=view).observe(time.perf_counter() - started)
        return response


# -- Figures read at scrape time ----------------------------------------------------------


def _celery_queue_length(client, queue: str) -> int:
    """Messages waiting in a Celery queue on Redis (a list per priority step)."""
    pipe = client.pipeline(transaction=False)
    for suffix in ("", "\x06\x163", "\x06\x166", "\x06\x169"):
        pipe.llen(f"{queue}{suffix}")
    return sum(pipe.execute())


# What each app reads at scrape time, registered by its AppConfig.ready (so this
# module, below every app, imports none of them): ``source`` is "database" or "redis",
# and a reader returns metric families.
StateReader = Callable[[], Iterable[Metric]]
STATE_READERS: dict[str, list[StateReader]] = {"database": [], "redis": []}


def state_reader_register(*, source: str, reader: StateReader) -> None:
    """Have ``reader`` called at every scrape (once per process: registering the same
    reader again changes nothing)."""
    readers = STATE_READERS[source]
    if reader not in readers:
        readers.append(reader)


def celery_queue_lengths() -> list[Metric]:
    """Tasks waiting in each Celery queue (on the broker's Redis)."""
    client = broker_redis()
    queues = GaugeMetricFamily(
        "visio_celery_queue_length", "Tasks waiting in each Celery queue", labels=["queue"]
    )
    for queue in settings.CELERY_QUEUES:
        queues.add_metric([queue], _celery_queue_length(client, queue))
    return [queues]


state_reader_register(source="redis", reader=celery_queue_lengths)


class StateCollector:
    """Gauges computed from PostgreSQL and Redis when Prometheus scrapes."""

    def collect(self):
        up = GaugeMetricFamily(
            "visio_metrics_source_up",
            "Whether the scrape could read a source of state (database, redis)",
            labels=["source"],
        )
        sources = ["database", "redis"] if settings.CELERY_BROKER_URL else ["database"]
        for source in sources:
            try:
                families = [f for reader in STATE_READERS[source] for f in reader()]
            except Exception as exc:  # noqa: BLE001 - a scrape reports, it never fails
                logger.warning("metrics: %s unreadable: %s", source, type(exc).__name__)
                up.add_metric([source], 0)
                continue
            yield from families
            up.add_metric([source], 1)
        yield up


class _ProcessCollector:
    """This process's own counters (when not in multiprocess mode)."""

    def collect(self):
        yield from REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry_for_scrape(*, state: bool) -> CollectorRegistry:
    """Every process's counters (multiprocess mode) or this one's, plus, with
    ``state``, the figures read from the database and Redis."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry.register(_ProcessCollector())
    if state:
        registry.register(StateCollector())
    return registry


# -- Who may scrape ------------------------------------------------------------------------


def parse_networks(values) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """CIDRs (or single addresses); ValueError naming a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"METRICS_ALLOWED_NETWORKS: {value!r} is not a network") from exc
    return networks


def _bearer_matches(header: str) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = header.partition(" ")
    return (
        bool(token)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    )


def _from_allowed_network(request) -> bool:
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False  # came through a proxy: the address is the proxy's
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in parse_networks(settings.METRICS_ALLOWED_NETWORKS))


def scrape_allowed(request) -> bool:
    """A matching ``METRICS_TOKEN`` bearer, or a direct call from an allowed network."""
    return _bearer_matches(request.META.get("HTTP_AUTHORIZATION", "")) or _from_allowed_network(
        request
    )


@never_cache
@require_GET
def metrics_view(request):
    """The Prometheus text exposition of this pod's counters and the service's state."""
    if not scrape_allowed(request):
        response = JsonResponse({"error": "metrics are for the monitoring system"}, status=403)
        if settings.METRICS_TOKEN:
            response.status_code = 401
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        generate_latest(registry_for_scrape(state=True)), content_type=CONTENT_TYPE_LATEST
    )


# -- Workers ---------------------------------------------------------------------------------


def _worker_app(registry: CollectorRegistry):
    """A WSGI app answering the exposition, behind ``METRICS_TOKEN`` when it is set."""
    exposition = make_wsgi_app(registry)

    def app(environ, start_response):
        if settings.METRICS_TOKEN and not _bearer_matches(environ.get("HTTP_AUTHORIZATION", "")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
            return [b"metrics are for the monitoring system\n"]
        return exposition(environ, start_response)

    return app


class QuietHandler(WSGIRequestHandler):
    """No access line per scrape on the worker's stderr."""

    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        return


def worker_metrics_serve(*, port: int, addr: str):
    """Serve the worker pool's counters on ``addr:port`` from a daemon thread (the
    worker's main process; its pool processes write to ``PROMETHEUS_MULTIPROC_DIR``)."""
    if not multiprocess_dir():
        logger.warning(
            "CELERY_METRICS_PORT without PROMETHEUS_MULTIPROC_DIR: only the main "
            "process's figures are served, not its pool's"
        )

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    httpd = make_server(
        addr, port, _worker_app(registry_for_scrape(state=False)), Server, QuietHandler
    )
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    logger.info("Worker metrics on %s:%s", addr, httpd.server_port)
    return httpd
