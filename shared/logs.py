"""Structured logs: one JSON object per line, with the correlation id of the request or event
being handled, and phone numbers and e-mail addresses masked whatever the message says.

The correlation id is born at intake's HTTP edge (the caller's X-Correlation-ID, or a new one),
travels in every event (and its Kafka headers) and is set again by each consumer around its
handler, so one id finds a ticket's lines in every service's log.
"""

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CORRELATION_ID: ContextVar[str | None] = ContextVar("correlation_id", default=None)

MAX_CORRELATION_ID = 128
_ACCEPTABLE_ID = re.compile(rf"^[A-Za-z0-9._:-]{{1,{MAX_CORRELATION_ID}}}$")

_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# Mainland mobiles (+86 optional, spaces or dashes between groups) and landlines with an area
# code; digits on either side mean a longer number (an offset, a timestamp), not a phone.
_PHONE = re.compile(
    r"(?<![\d+])(?:\+?86[\s-]?)?(?:1[3-9]\d(?:[\s-]?\d{4}){2}|0\d{2,3}-\d{7,8})(?!\d)"
)


def masked(text: str) -> str:
    """The text with e-mail addresses cut to their first letter and domain, and phone numbers
    replaced."""
    text = _EMAIL.sub(r"\1***@\2", text)
    return _PHONE.sub("[phone]", text)


def correlation_id_from(header: str | None) -> str:
    """The caller's id if it is a sane one, else a new one: a header is untrusted input."""
    if header is not None and _ACCEPTABLE_ID.match(header):
        return header
    return uuid.uuid4().hex


class CorrelationIds:
    """Gives each HTTP request its correlation id (the caller's X-Correlation-ID, or a new one),
    for its logs and the events it causes, and returns it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-correlation-id")
        correlation_id = correlation_id_from(given.decode("latin-1") if given else None)
        token = CORRELATION_ID.set(correlation_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", []),
                    (b"x-correlation-id", correlation_id.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CORRELATION_ID.reset(token)


class _ServiceJsonFormatter(JsonFormatter):
    def __init__(self, service: str) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
        self._service = service

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["service"] = self._service
        correlation_id = CORRELATION_ID.get()
        if correlation_id is not None:
            log_data["correlation_id"] = correlation_id

    def format(self, record: logging.LogRecord) -> str:
        # Masked after formatting, so that arguments, exceptions and stack traces are too.
        return masked(super().format(record))


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_ServiceJsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka's per-record debug and reconnect chatter hides what matters.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # Uvicorn's loggers go through the same handler, as JSON.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
