"""Gauge of CSV import jobs by state, read at scrape time (registered by
``AccountsConfig.ready``): it describes PostgreSQL, so it is right whichever process
answers."""

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from accounts.models import AgentImportJob


def import_jobs_by_state() -> list[GaugeMetricFamily]:
    """CSV import jobs by state (read from PostgreSQL)."""
    jobs = GaugeMetricFamily(
        "visio_agent_import_jobs", "CSV import jobs by state", labels=["state"]
    )
    counted = dict(AgentImportJob.objects.values_list("state").annotate(n=Count("id")).order_by())
    for state in AgentImportJob.State.values:
        jobs.add_metric([state], counted.get(state, 0))
    return [jobs]
