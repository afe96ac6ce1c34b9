"""The API process's own Prometheus figures: HTTP requests and uploaded bytes.

Each app has a registry of its own (tests build several apps in one process), which also
holds the store's collector (`service.store_metrics`) once the app has started; GET
/metrics (`service.routes.metrics`) renders it.

Requests are labelled by the route's template (`/v1/jobs/{job_id}`), never the raw path,
so IDs cannot multiply the series; a request no route matched is `unmatched`, and a method
outside HTTP's usual set is `other`.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
STATIC_ROUTE = "/static/{path}"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Polls answer in milliseconds; uploads and downloads of gigabytes take minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class ApiMetrics:
    """The registry /metrics renders, and the API's own metrics in it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deadweight_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "deadweight_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template.",
            ("method", "route"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "deadweight_upload_bytes",
            "Bytes of uploads received and stored, by kind (models, datasets).",
            ("kind",),
            registry=self.registry,
        )


def route_template(scope: Scope) -> str:
    """The matched route's path template, once routing has run."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    if isinstance(scope.get("endpoint"), StaticFiles):
        # The mounted pages' assets (/docs, /redoc, the dashboard): one label for all.
        return STATIC_ROUTE
    return UNMATCHED


def count_upload(request: Request, size: int) -> None:
    """Add a stored upload's bytes, its kind named by the route (`/v1/models` -> models)."""
    metrics: ApiMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        kind = route_template(request.scope).rstrip("/").rsplit("/", 1)[-1]
        metrics.upload_bytes.labels(kind).inc(size)


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request, the guards' refusals included."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = route_template(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
