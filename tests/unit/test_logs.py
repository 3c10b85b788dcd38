import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from shared.logs import (
    CORRELATION_ID,
    CorrelationIds,
    configure_logging,
    correlation_id_from,
    masked,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail li.na@example.com now", "mail l***@example.com now"),
        ("call +86 138 0013 8000 today", "call [phone] today"),
        ("call 13800138000", "call [phone]"),
        ("call 138-0013-8000", "call [phone]"),
        ("office 022-66778899", "office [phone]"),
        ("due 2026-11-29 08:00:00", "due 2026-11-29 08:00:00"),
        ("offset 1764398123456", "offset 1764398123456"),
        ("ticket T-20261129-0001 partition 3", "ticket T-20261129-0001 partition 3"),
    ],
)
def test_phones_and_emails_are_masked_and_nothing_else(text: str, expected: str) -> None:
    assert masked(text) == expected


def test_a_sane_correlation_id_is_kept_and_anything_else_replaced() -> None:
    assert correlation_id_from("portal-req:42.a_b") == "portal-req:42.a_b"
    for untrusted in (None, "", "x" * 129, "two words", 'quote"d', "newline\nid"):
        replaced = correlation_id_from(untrusted)
        assert replaced != untrusted
        assert len(replaced) == 32


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    configure_logging("unit", "INFO")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:], root.level = before[0], before[1]


def test_each_line_is_json_with_service_correlation_id_and_masked_text(
    captured: io.StringIO,
) -> None:
    token = CORRELATION_ID.set("req-7")
    try:
        logging.getLogger("parkdesk.unit").warning("contact %s failed", "li.na@example.com")
    finally:
        CORRELATION_ID.reset(token)
    logging.getLogger("parkdesk.unit").info("no request here")

    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first["service"] == "unit"
    assert first["level"] == "WARNING"
    assert first["logger"] == "parkdesk.unit"
    assert first["correlation_id"] == "req-7"
    assert first["message"] == "contact l***@example.com failed"
    assert "correlation_id" not in second


def test_exceptions_are_masked_too(captured: io.StringIO) -> None:
    try:
        raise ValueError("no such number 13800138000")
    except ValueError:
        logging.getLogger("parkdesk.unit").exception("failed")

    line = json.loads(captured.getvalue())
    assert "13800138000" not in captured.getvalue()
    assert "[phone]" in line["exc_info"]


async def test_requests_get_a_correlation_id_their_handler_sees_and_the_caller_gets_back() -> None:
    app = FastAPI()
    app.add_middleware(CorrelationIds)

    @app.get("/id")
    async def current() -> str | None:
        return CORRELATION_ID.get()

    async with AsyncClient(transport=ASGITransport(app), base_url="http://test") as http:
        given = await http.get("/id", headers={"X-Correlation-ID": "portal-1"})
        made = await http.get("/id")

    assert given.json() == "portal-1"
    assert given.headers["x-correlation-id"] == "portal-1"
    assert len(made.json()) == 32
    assert made.headers["x-correlation-id"] == made.json()
    assert CORRELATION_ID.get() is None
