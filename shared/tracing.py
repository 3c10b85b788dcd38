"""OpenTelemetry traces: a span per HTTP request (FastAPI's own, which continues a caller's
`traceparent`) and per consumed event, linked across services by W3C trace context in the Kafka
headers (and, for intake, kept in the outbox from the request that stored an event to the
sweep that may publish it later).

Exported over OTLP/HTTP when an endpoint is configured with the standard variables
(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); off otherwise, when the
API's no-op tracer makes every span nearly free.
"""

import os
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

tracer = trace.get_tracer("parkdesk")


def configure_tracing(service: str) -> TracerProvider | None:
    """Exports this process's spans if an OTLP endpoint is configured; returns the provider
    (to flush at exit), or None when tracing is off."""
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    # Imported only when used: the exporter pulls in protobuf and requests.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or f"parkdesk-{service}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (empty when no span is recording)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def context_from(headers: Mapping[str, str]) -> Context:
    return propagate.extract(headers)
