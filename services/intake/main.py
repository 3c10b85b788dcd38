"""intake: frontends and enterprises open tickets here; it stores each one and publishes it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta

from fastapi import FastAPI

from services.intake.config import IntakeSettings
from services.intake.handlers import EventHandlers, routes
from services.intake.relay import OutboxRelay
from services.intake.store import IntakeStore
from shared import service
from shared.auth import Authenticator
from shared.events import TicketRouted
from shared.kafka import EventConsumer, make_broker
from shared.mongo import connect

NAME = "intake"


def create(settings: IntakeSettings) -> FastAPI:
    client, database = connect(settings, NAME)
    store = IntakeStore(database)
    broker = make_broker(settings, NAME)
    relay = OutboxRelay(
        store, broker, settings.topics, settings.relay_batch_size, settings.relay_idle_seconds
    )
    consumer = EventConsumer(broker, settings, NAME, [settings.topics.tickets])
    consumer.on(TicketRouted, EventHandlers(store).on_ticket_routed)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.ensure_indexes()
        await broker.start()
        relaying = None
        if settings.relay_enabled:
            relaying = asyncio.create_task(relay.run(), name="outbox-relay")
        try:
            yield
        finally:
            if relaying is not None:
                relaying.cancel()
                with suppress(asyncio.CancelledError):
                    await relaying
            await broker.stop()
            await client.close()

    app = service.create_app(NAME, lifespan, "Open tickets and follow them.")
    app.include_router(
        routes(
            store,
            relay,
            Authenticator(settings.auth_secret.get_secret_value()),
            timedelta(seconds=settings.resolution_target_seconds),
        )
    )
    return app


def run() -> None:
    settings = IntakeSettings()
    service.configure_logging(settings.log_level)
    service.run(create(settings), settings.http_host, settings.http_port, settings.log_level)
