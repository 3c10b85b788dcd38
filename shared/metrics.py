"""Prometheus metrics that every service exposes on /metrics.

Label values stay few and known: route templates (never raw paths), event types, topic names,
department codes, channels. Never a ticket id, an enterprise or a person.
"""

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "generate_latest"]

HTTP_REQUESTS = Counter(
    "parkdesk_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "parkdesk_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_CONSUMED = Counter(
    "parkdesk_events_consumed",
    "Records consumed, by topic, event type and outcome (handled, ignored, dead_lettered).",
    ["topic", "type", "outcome"],
)
HANDLER_LATENCY = Histogram(
    "parkdesk_event_handler_duration_seconds",
    "Time from the start of an event's handling to its effect stored, retries included.",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
HANDLER_RETRIES = Counter(
    "parkdesk_event_handler_retries",
    "Handler attempts that failed and were retried, by cause (transient: store or broker "
    "unreachable; error: anything else).",
    ["type", "cause"],
)
DEAD_LETTERS = Counter(
    "parkdesk_dead_letters",
    "Records sent to the dead-letter topic, by the topic they came from.",
    ["source_topic"],
)
EVENTS_PUBLISHED = Counter(
    "parkdesk_events_published",
    "Events the broker confirmed, by topic and event type.",
    ["topic", "type"],
)
CONSUMER_LAG = Gauge(
    "parkdesk_consumer_lag",
    "Records on an assigned partition not yet consumed by this instance.",
    ["topic", "partition"],
)
SLA_EVENTS = Counter(
    "parkdesk_sla_events",
    "SLA events published, by type and the ticket's department.",
    ["type", "department"],
)
OPEN_CLOCKS = Gauge("parkdesk_sla_open_clocks", "Clocks this sla instance holds in memory.")
NOTIFICATIONS = Counter(
    "parkdesk_notifications",
    "Notifications that reached their end, by channel and status (delivered or failed).",
    ["channel", "status"],
)


class HttpMetrics:
    """Counts and times every HTTP request under its route template, so that
    /v1/tickets/{ticket_id} is one series however many tickets there are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            route = _route_template(scope)
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    # The router writes the matched route into the scope; no match is one series, not one per
    # probed path.
    route = scope.get("route")
    path: str | None = getattr(route, "path", None)
    return path if path is not None else "unmatched"
