"""Prometheus metrics (the prometheus_client library), read when scraped from the rows (the truth)
and from Redis, so every web process answers alike whichever worker did the work; and this web
process's own open websockets. Served by reports.views.metrics behind a bearer token."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, F, Min, Q, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from redis.exceptions import RedisError

from notifications.services import open_sockets

from . import queues
from .models import ReportDownload, ReportJob, ReportSegment, Status

# seconds
DURATION_BUCKETS: list[float] = [1, 5, 15, 60, 300, 900, 3600, 4 * 3600]
# rows a second
SPEED_BUCKETS: list[float] = [1_000, 10_000, 50_000, 100_000, 250_000, 500_000, 1_000_000]


def histogram(name: str, documentation: str, values: list[float], buckets: list[float]) -> HistogramMetricFamily:
    cumulative = [(str(bound), sum(v <= bound for v in values)) for bound in buckets] + [("+Inf", len(values))]
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=sum(values))


class ReportsCollector:
    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("reports_jobs", "Report jobs by status and format.", labels=["status", "format"])
        for row in ReportJob.objects.values("status", "format").annotate(n=Count("pk")).order_by():
            jobs.add_metric([row["status"], row["format"]], row["n"])
        yield jobs
        ended = ReportJob.objects.filter(status__in=(Status.SUCCEEDED, Status.EXPIRED), started_at__isnull=False)
        runs = [
            (rows, (end - start).total_seconds())
            for rows, start, end in ended.values_list("rows_done", "started_at", "finished_at").iterator()
        ]
        yield histogram(
            "reports_job_duration_seconds",
            "From a succeeded job's start to its end.",
            [seconds for _, seconds in runs],
            DURATION_BUCKETS,
        )
        yield histogram(
            "reports_job_rows_per_second",
            "Rows a second of succeeded jobs.",
            [rows / seconds for rows, seconds in runs if seconds > 0],
            SPEED_BUCKETS,
        )
        retries = ReportSegment.objects.aggregate(n=Sum(F("attempts") - 1, filter=Q(attempts__gt=1)))["n"] or 0
        yield CounterMetricFamily("reports_segment_retries", "Runs of segments beyond their first.", value=retries)
        yield CounterMetricFamily("reports_downloads", "Report files downloaded.", value=ReportDownload.objects.count())
        oldest = ReportJob.objects.filter(status=Status.QUEUED).aggregate(at=Min("created_at"))["at"]
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("reports_oldest_queued_job_age_seconds", "Age of the oldest queued job.", value=age)
        try:
            depth: float = queues.reports_queue().count
        except RedisError:
            # Redis away: no figure rather than a wrong one
            depth = float("nan")
        yield GaugeMetricFamily("reports_queue_depth", "RQ jobs waiting in the reports queue.", value=depth)
        yield GaugeMetricFamily(
            "reports_websocket_connections", "Websockets open in this web process.", value=open_sockets()
        )


def registry() -> CollectorRegistry:
    metrics = CollectorRegistry()
    metrics.register(ReportsCollector())
    return metrics
