"""Traces across the suite: with an OTLP endpoint configured, each service exports its spans,
and one ticket's spans form one trace from the frontend's request through intake's outbox,
routing, sla and notify, joined by the trace context in the Kafka headers. Export goes to a
real HTTP server on loopback that decodes the OTLP protobuf, as a collector would."""

import asyncio
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shared.auth import Role
from shared.settings import CommonSettings
from tests.harness import ServiceProcess, WebhookReceiver, running_services, submit, ticket_body

pytestmark = pytest.mark.integration

Span = dict[str, Any]


@pytest.fixture(scope="module")
def collector() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def suite(
    service_env: dict[str, str],
    module_settings: CommonSettings,
    collector: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ServiceProcess]]:
    env = {
        **service_env,
        "PARKDESK_NAMESPACE": module_settings.namespace,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url.removesuffix("/hook"),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    logs = tmp_path_factory.mktemp("tracing-service-logs")
    with running_services(["intake", "routing", "sla", "notify"], env, logs) as found:
        yield found


def exported_spans(collector: WebhookReceiver) -> list[Span]:
    spans = []
    for request in list(collector.requests):
        if request.path != "/v1/traces":
            continue
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        {
                            "service": attributes.get("service.name"),
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                        }
                    )
    return spans


async def test_one_ticket_is_one_trace_across_every_service(
    suite: dict[str, ServiceProcess],
    collector: WebhookReceiver,
    http: httpx.AsyncClient,
    credential: Callable[[Role, str], dict[str, str]],
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {
        **credential(Role.FRONTEND, "traced-portal"),
        "traceparent": f"00-{trace_id}-{caller_span}-01",
    }
    answer = await submit(http, suite["intake"], headers, ticket_body("孩子学籍", "学籍如何保留？"))
    assert answer.status_code == 202

    wanted = {
        ("parkdesk-intake", "POST /v1/tickets"),
        ("parkdesk-routing", "ticket.submitted process"),
        ("parkdesk-sla", "ticket.routed process"),
        ("parkdesk-notify", "ticket.routed process"),
        # notify says nothing about a clock starting; intake keeps it in the ticket's history.
        ("parkdesk-intake", "sla.started process"),
    }

    def of_trace() -> list[Span]:
        return [s for s in exported_spans(collector) if s["trace_id"] == trace_id]

    for _ in range(300):
        if wanted <= {(s["service"], s["name"]) for s in of_trace()}:
            break
        await asyncio.sleep(0.2)
    spans = of_trace()
    assert wanted <= {(s["service"], s["name"]) for s in spans}

    by_id = {s["span_id"]: s for s in spans}

    def one(service: str, name: str) -> Span:
        (found,) = [s for s in spans if (s["service"], s["name"]) == (service, name)]
        return found

    request = one("parkdesk-intake", "POST /v1/tickets")
    assert request["parent_id"] == caller_span  # the caller's trace continues

    def descends(span: Span, ancestor: Span) -> bool:
        while span["parent_id"] in by_id:
            span = by_id[span["parent_id"]]
            if span is ancestor:
                return True
        return False

    routing = one("parkdesk-routing", "ticket.submitted process")
    # Published by the relay after the request stored it, still within the request's trace.
    assert descends(routing, request)
    sla = one("parkdesk-sla", "ticket.routed process")
    assert by_id[sla["parent_id"]] is routing  # routing published ticket.routed while handling
    started = one("parkdesk-intake", "sla.started process")
    assert by_id[started["parent_id"]] is sla  # sla published sla.started while handling
    notified = one("parkdesk-notify", "ticket.routed process")
    assert by_id[notified["parent_id"]] is routing
