"""What every service's entry point uses: logging, the HTTP app shell, and the runner."""

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import asyncapi
from shared.auth import DEFAULT_LIMITS, Authenticator, RateLimiter
from shared.credentials import CredentialRegistry
from shared.kafka import EventConsumer
from shared.logs import CorrelationIds, configure_logging
from shared.metrics import CONTENT_TYPE_LATEST, HttpMetrics, generate_latest
from shared.mongo import Document
from shared.settings import ServiceSettings
from shared.tracing import configure_tracing

S = TypeVar("S", bound=ServiceSettings)

MAX_BODY_BYTES = 64 * 1024


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


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """422 naming each field and what is wrong with it, never quoting what was sent: it may be a
    phone number or an e-mail address, and an unpaired surrogate could not even be encoded."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        {
            "detail": [
                {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
                for error in exc.errors()
            ]
        },
        status_code=422,
    )


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # Refuse what cannot be kept rather than accept it and lose it.
    logging.getLogger("parkdesk.http").warning("store unavailable: %r", exc)
    return JSONResponse(
        {"detail": "the service's store is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


Check = Callable[[], Awaitable[bool]]

READY_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Wiring:
    """What a service's process starts, checks and stops, besides its routes."""

    broker: KafkaBroker
    client: AsyncMongoClient[Document]
    credentials: CredentialRegistry
    consumer: EventConsumer
    prepare: Callable[[], Awaitable[None]]
    """Readies the store (its indexes) before any event is consumed."""
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    before_stop: Sequence[Callable[[], Awaitable[None]]] = ()
    checks: Mapping[str, Check] = field(default_factory=dict)
    """The service's own readiness checks, besides broker, store and consumer group."""


def wired_app(settings: ServiceSettings, service: str, description: str, wiring: Wiring) -> FastAPI:
    """A service's HTTP app, which starts and stops what the wiring holds; the caller adds the
    service's own routes."""
    return create_app(settings, service, description, _lifespan(wiring), _readiness(wiring))


def create_app(
    settings: ServiceSettings,
    service: str,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    checks: Mapping[str, Check],
) -> FastAPI:
    """The shell every service's app shares: operations routes, request limits, metrics."""
    app = FastAPI(
        title=f"parkdesk {service}",
        description=description,
        version="1",
        lifespan=lifespan,
        # FastAPI's own request spans, on the provider shared.tracing sets when an endpoint is
        # configured. Not its log records: a validation failure's message may quote a phone
        # number or an e-mail address.
        telemetry={"logs": False, "auto_configure": False},
    )
    app.add_middleware(BodySizeLimit)
    app.add_middleware(HttpMetrics)
    app.add_middleware(CorrelationIds)
    app.add_exception_handler(ConnectionFailure, _store_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    metrics_token = settings.metrics_token

    @app.get("/health", tags=["operations"], summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Broker and store reachable, consumer group joined: send work here",
        responses={503: {"description": "Some check failed; the body says which"}},
    )
    async def ready() -> JSONResponse:
        results = await _run_checks(checks)
        status = 200 if all(results.values()) else 503
        return JSONResponse(
            {"status": "ready" if status == 200 else "not ready", "checks": results},
            status_code=status,
        )

    events = asyncapi.document(settings.topics)
    events_page = asyncapi.html(events)

    @app.get("/asyncapi.json", tags=["documentation"], summary="The events, as AsyncAPI 3.0")
    async def asyncapi_document() -> dict[str, Any]:
        return events

    @app.get("/asyncapi", tags=["documentation"], summary="The events, for people to read")
    async def asyncapi_page() -> HTMLResponse:
        return HTMLResponse(events_page)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        # Metrics carry no personal data, but only the scraper needs them: with a token
        # configured, nobody else reads them.
        if metrics_token is not None:
            expected = f"Bearer {metrics_token.get_secret_value()}"
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise HTTPException(401, "metrics need the scrape token")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _run_checks(checks: Mapping[str, Check]) -> dict[str, bool]:
    async def outcome(check: Check) -> bool:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                return await check()
        except Exception:  # any failure means "not ready", which is the answer
            return False

    results = await asyncio.gather(*(outcome(check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))


def _readiness(wiring: Wiring) -> dict[str, Check]:
    """What a service needs before it should get traffic: its broker, its store, and its
    place in its consumer group."""

    async def broker_reachable() -> bool:
        return await wiring.broker.ping(timeout=READY_TIMEOUT_SECONDS)

    async def store_reachable() -> bool:
        await wiring.client.admin.command("ping")
        return True

    async def group_joined() -> bool:
        return wiring.consumer.joined

    return {
        "broker": broker_reachable,
        "store": store_reachable,
        "consumer_group": group_joined,
        **wiring.checks,
    }


def authentication(settings: ServiceSettings) -> tuple[Authenticator, CredentialRegistry]:
    """The service's credential check, which refuses what the credentials topic revoked."""
    topics = settings.topics
    registry = CredentialRegistry(settings.kafka_bootstrap_servers, topics.spec(topics.credentials))
    limiter = RateLimiter({**DEFAULT_LIMITS, **settings.rate_limits})
    authenticator = Authenticator(
        settings.auth_secret.get_secret_value(), registry.is_revoked, limiter
    )
    return authenticator, registry


def _lifespan(wiring: Wiring) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Every service's start and stop, in one order: learn the credentials, prepare the store,
    start the broker (its consumers and producer), start the background work; on the way out
    stop that work first, while the producer it publishes through still runs, then the broker,
    then the store."""

    @asynccontextmanager
    async def running(_: FastAPI) -> AsyncIterator[None]:
        await wiring.credentials.start()
        await wiring.prepare()
        await wiring.broker.start()
        work = (wiring.consumer.report_lag, wiring.consumer.commit_handled, *wiring.background)
        tasks = [asyncio.create_task(run()) for run in work]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for stop in wiring.before_stop:
                await stop()
            await wiring.broker.stop()
            await wiring.client.close()
            await wiring.credentials.stop()

    return running


def serve(service: str, settings: S, create: Callable[[S], FastAPI]) -> None:
    """A service's process: its settings from the environment, its app, and uvicorn.

    Uvicorn handles SIGTERM and SIGINT: it stops accepting, finishes requests in flight and runs
    the lifespan shutdown, which stops the consumers (committing what they processed)."""
    configure_logging(service, settings.log_level)
    traces = configure_tracing(service)
    uvicorn.run(
        create(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        # The JSON logging configured above, not uvicorn's own.
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    if traces is not None:
        traces.shutdown()  # exports the spans still buffered
