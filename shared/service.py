"""What every service's entry point uses: logging, the HTTP app shell, and the runner."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Authenticator
from shared.credentials import CredentialRegistry
from shared.mongo import Document
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)

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


def authentication(settings: ServiceSettings) -> tuple[Authenticator, CredentialRegistry]:
    """The service's credential check, which refuses what the credentials topic revoked."""
    topics = settings.topics
    registry = CredentialRegistry(settings.kafka_bootstrap_servers, topics.spec(topics.credentials))
    return Authenticator(settings.auth_secret.get_secret_value(), registry.is_revoked), registry


def lifespan(
    broker: KafkaBroker,
    client: AsyncMongoClient[Document],
    credentials: CredentialRegistry,
    prepare: Callable[[], Awaitable[None]],
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    before_stop: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Every service's start and stop, in one order: learn the credentials, prepare the store,
    start the broker (its consumers and producer), start the background work; on the way out
    stop that work first, while the producer it publishes through still runs, then the broker,
    then the store."""

    @asynccontextmanager
    async def running(_: FastAPI) -> AsyncIterator[None]:
        await credentials.start()
        await prepare()
        await broker.start()
        tasks = [asyncio.create_task(work()) for work in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for stop in before_stop:
                await stop()
            await broker.stop()
            await client.close()
            await credentials.stop()

    return running


def serve(settings: S, create: Callable[[S], FastAPI]) -> None:
    """A service's process: its settings from the environment, its app, and uvicorn.

    Uvicorn handles SIGTERM and SIGINT: it stops accepting, finishes requests in flight and runs
    the lifespan shutdown, which stops the consumers (committing what they processed)."""
    configure_logging(settings.log_level)
    uvicorn.run(
        create(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
