"""sla: a clock per ticket against the 24-hour promise; warns before, escalates after."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

from fastapi import FastAPI

from services.sla.config import SlaSettings
from services.sla.handlers import ClockOwnership, EventHandlers, routes
from services.sla.store import SlaStore
from shared import service
from shared.auth import Authenticator
from shared.events import TicketRouted
from shared.kafka import EventConsumer, make_broker
from shared.mongo import connect

NAME = "sla"


def utc_now() -> datetime:
    return datetime.now(UTC)


def create(settings: SlaSettings) -> FastAPI:
    client, database = connect(settings, NAME)
    store = SlaStore(database)
    broker = make_broker(settings, NAME)
    handlers = EventHandlers(store, broker, settings.topics, settings.policy(), utc_now)
    consumer = EventConsumer(
        broker,
        settings,
        NAME,
        [settings.topics.tickets],
        listener=ClockOwnership(store, handlers.scheduler, settings.topics.tickets),
    )
    consumer.on(TicketRouted, handlers.on_ticket_routed)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.ensure_indexes()
        await broker.start()
        timing = asyncio.create_task(handlers.scheduler.run(), name="sla-clocks")
        try:
            yield
        finally:
            # Timers first: a milestone firing now still has its producer.
            timing.cancel()
            with suppress(asyncio.CancelledError):
                await timing
            await broker.stop()
            await client.close()

    app = service.create_app(NAME, lifespan, "The 24-hour clock of every ticket.")
    app.include_router(routes(store, Authenticator(settings.auth_secret.get_secret_value())))
    return app


def run() -> None:
    settings = SlaSettings()
    service.configure_logging(settings.log_level)
    service.run(create(settings), settings.http_host, settings.http_port, settings.log_level)
