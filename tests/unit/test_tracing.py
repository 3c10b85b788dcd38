"""Tracing is off unless an OTLP endpoint is configured (the suite's test proves the export)."""

import pytest
from opentelemetry import trace

from shared.tracing import ENDPOINT_VARIABLES, carrier, configure_tracing


def test_without_an_endpoint_nothing_is_set_up_and_no_context_travels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert configure_tracing("intake") is None
    with trace.get_tracer("test").start_as_current_span("request"):
        assert carrier() == {}  # a no-op span has no context to send
