"""Prometheus metrics of logins and agent imports (exposed by ``/metrics``); the
import jobs' gauge, read at scrape time, is in ``accounts.gauges``."""

from prometheus_client import Counter

LOGINS = Counter(
    "visio_logins_total",
    "ProConnect logins by outcome (success, refused) and refusal reason",
    ["outcome", "reason"],
)
IMPORT_JOBS = Counter(
    "visio_agent_import_jobs_finished_total",
    "CSV import jobs finished, by final state (done, failed) and mode (preview, apply)",
    ["state", "mode"],
)
IMPORT_ROWS = Counter(
    "visio_agent_import_rows_total",
    "Rows of finished CSV import jobs, by planned action (create, update, error...)",
    ["action", "mode"],
)
