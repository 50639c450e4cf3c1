"""Prometheus metrics and the access log, from one ASGI middleware: requests by route
template and status, latency, unexpected failures, and (read when scraped) the depth of
the export and import queues.

The access log names the route template (`/api/v1/data/download/{token}`), never the
path: a download link's token is a credential and must not reach a log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resources import schema

access_log = logging.getLogger("goalport.api.access")


class ApiMetrics:
    def __init__(self, engine: sa.Engine):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "goalport_api_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "goalport_api_request_duration_seconds",
            "Time to answer a request (to the last byte), by route template",
            ["route", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.failures = Counter(
            "goalport_api_failures",
            "Requests that ended in an unexpected error (status 500)",
            ["route"],
            registry=self.registry,
        )
        self.registry.register(QueueDepths(engine))


class QueueDepths(Collector):
    """Export and import jobs by status, counted when Prometheus scrapes."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, table in (
            ("goalport_export_jobs", schema.data_export_job),
            ("goalport_import_jobs", schema.data_import_job),
        ):
            family = GaugeMetricFamily(name, f"{table.name} rows by status", labels=["status"])
            query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
            with self.engine.connect() as conn:
                for status, count in conn.execute(query):
                    family.add_metric([status], count)
            yield family


class MetricsMiddleware:
    """Counts and times every HTTP request and writes one access-log line for it."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route_object = scope.get("route")
            route = getattr(route_object, "path_format", None) or "unmatched"
            method = scope["method"]
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)
            if status >= 500:
                self.metrics.failures.labels(route).inc()
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %d %.1f ms',
                client[0] if client else "-",
                method,
                route,
                status,
                elapsed * 1000,
            )
