"""What every service's entry point uses: logging, the HTTP app shell, and the runner."""

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiokafka's per-record debug and reconnect chatter hides what matters.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


class BodySizeLimit:
    """Refuses request bodies over the limit with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(send, self.max_bytes)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, max_bytes: int) -> None:
    body = b'{"detail":"request body over %d bytes"}' % max_bytes
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # Refuse what cannot be kept rather than accept it and lose it.
    logging.getLogger("parkdesk.http").warning("store unavailable: %r", exc)
    return JSONResponse(
        {"detail": "the service's store is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def create_app(
    service: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    description: str,
) -> FastAPI:
    app = FastAPI(
        title=f"parkdesk {service}",
        description=description,
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit)
    app.add_exception_handler(ConnectionFailure, _store_unavailable)

    @app.get("/health", tags=["operations"], summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    return app


def run(app: FastAPI, host: str, port: int, log_level: str) -> None:
    # Uvicorn handles SIGTERM and SIGINT: it stops accepting, finishes requests in flight and
    # runs the lifespan shutdown, which stops the consumers and commits.
    uvicorn.run(
        app, host=host, port=port, log_level=log_level.lower(), timeout_graceful_shutdown=10
    )
