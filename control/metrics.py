"""`/metrics` of the control plane, in the Prometheus text format.

What is counted, per app (each `ControlMetrics` has its own registry, so two apps in one process, as in
tests, never share counts):

- `darktower_http_requests_total{method,route,status}` and `darktower_http_request_duration_seconds`
  `{method,route}` (a histogram). `route` is the route's template (`/v1/meetings/{meeting_id}`), never the
  raw path, so callers cannot grow the label set: unknown paths count as `unmatched`, the web app as `web`.
- `darktower_joins_total` (join tokens issued) and `darktower_logins_total{outcome}` (password sign-ins:
  `success` or the refusal's error code), read off the responses of those routes.
- `darktower_api_errors_total{code}`: every refusal by its error code; `darktower_store_errors_total` counts
  those that were a store being unreachable (`store_unavailable`, `rate_limiter_unavailable`).
- `darktower_worker_*{worker}` gauges read from the supervisor's heartbeat table at scrape time (state,
  connections, meetings, ring lag, restarts, seconds since the last heartbeat), when a server for the same data
  directory is running on this machine; without one they are absent, not zero.

Error codes reach the middleware through `note_error_code` (the ASGI scope's state), which the API's error
handlers call; the response body is never parsed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darktower.workers.heartbeat import HeartbeatError, HeartbeatTable, TableSnapshot

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_ERROR_CODE_KEY: Final = "darktower_error_code"
_JOIN_ROUTE: Final = "/v1/meetings/{meeting_id}/join"
_LOGIN_ROUTE: Final = "/v1/auth/login"
_STORE_CODES: Final = frozenset({"store_unavailable", "rate_limiter_unavailable"})
_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def note_error_code(scope: Scope, code: str) -> None:
    """Records the error code a response is about to carry, for the metrics middleware."""
    scope.setdefault("state", {})[_ERROR_CODE_KEY] = code


def error_code_of(scope: Scope) -> str | None:
    """The error code noted for this request's response, if any."""
    code = scope.get("state", {}).get(_ERROR_CODE_KEY)
    return code if isinstance(code, str) else None


class ControlMetrics:
    """The counters of one app and the registry `/metrics` renders."""

    def __init__(self, heartbeat_table: Callable[[], TableSnapshot | None] = lambda: None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "darktower_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "darktower_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.joins = Counter("darktower_joins", "Join tokens issued.", registry=self.registry)
        self.logins = Counter(
            "darktower_logins", "Password sign-ins, by outcome.", ["outcome"], registry=self.registry
        )
        self.errors = Counter(
            "darktower_api_errors", "Refusals, by error code.", ["code"], registry=self.registry
        )
        self.store_errors = Counter(
            "darktower_store_errors",
            "Requests refused because PostgreSQL or Redis could not be reached.",
            registry=self.registry,
        )
        self.registry.register(_WorkerCollector(heartbeat_table))

    def observe(self, method: str, route: str, status: int, seconds: float, code: str | None) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if code is not None:
            self.errors.labels(code).inc()
            if code in _STORE_CODES:
                self.store_errors.inc()
        if route == _JOIN_ROUTE and method == "POST" and status == 200:
            self.joins.inc()
        if route == _LOGIN_ROUTE and method == "POST":
            self.logins.labels("success" if status == 200 else code or f"http_{status}").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Times and counts every HTTP request of the app it wraps."""

    def __init__(
        self, app: ASGIApp, metrics: ControlMetrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = self._clock()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_and_note)
        finally:
            code = error_code_of(scope)
            if code is None and status == 500:
                code = "internal_error"
            self._metrics.observe(scope["method"], _route_label(scope), status, self._clock() - started, code)


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:
        return "unmatched"
    if isinstance(route, Mount):
        return "web"
    return str(getattr(route, "path", "unmatched"))


def metrics_endpoint(metrics: ControlMetrics) -> Callable[[Request], Response]:
    def render(_request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return render


def heartbeat_reader(segment: str) -> Callable[[], TableSnapshot | None]:
    """Reads the heartbeat table `segment` at each call, attaching once it exists; None while no server
    for it runs here."""
    table: HeartbeatTable | None = None

    def read() -> TableSnapshot | None:
        nonlocal table
        if table is None:
            try:
                table = HeartbeatTable.attach(segment)
            except HeartbeatError:
                return None
        return table.snapshot()

    return read


class _WorkerCollector(Collector):
    def __init__(self, read: Callable[[], TableSnapshot | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        snapshot = self._read()
        if snapshot is None:
            return
        now_ns = time.monotonic_ns()
        families = {
            "state": GaugeMetricFamily(
                "darktower_worker_state",
                "The supervisor's view of the worker (0 empty .. 6 stopped; 2 is running).",
                labels=["worker"],
            ),
            "connections": GaugeMetricFamily(
                "darktower_worker_connections", "Open QUIC connections.", labels=["worker"]
            ),
            "meetings": GaugeMetricFamily("darktower_worker_meetings", "Meetings served.", labels=["worker"]),
            "ring_lag": GaugeMetricFamily(
                "darktower_worker_ring_lag",
                "How far the worker reads behind its media ring.",
                labels=["worker"],
            ),
            "restarts": GaugeMetricFamily(
                "darktower_worker_restarts", "Times the worker was replaced.", labels=["worker"]
            ),
            "age": GaugeMetricFamily(
                "darktower_worker_heartbeat_age_seconds",
                "Seconds since the worker last beat (absent before its first beat).",
                labels=["worker"],
            ),
        }
        for record in snapshot.workers:
            label = [str(record.worker)]
            families["state"].add_metric(label, int(record.state))
            families["connections"].add_metric(label, record.connections)
            families["meetings"].add_metric(label, record.meetings)
            families["restarts"].add_metric(label, record.restarts)
            families["ring_lag"].add_metric(label, record.ring_lag)
            if record.beat_ns:
                families["age"].add_metric(label, max(0, now_ns - record.beat_ns) / 1e9)
        yield from families.values()


def install_metrics(app: Starlette, metrics: ControlMetrics) -> None:
    """Counts every request of `app` into `metrics` and serves them at `/metrics`."""
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_route("/metrics", metrics_endpoint(metrics), methods=["GET"], include_in_schema=False)
