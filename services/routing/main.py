"""routing: decides which department owns each submitted ticket and hands it over."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.routing.config import RoutingSettings
from services.routing.handlers import EventHandlers, routes
from services.routing.store import RoutingStore
from shared import service
from shared.auth import Authenticator
from shared.events import TicketSubmitted
from shared.kafka import EventConsumer, make_broker
from shared.mongo import connect

NAME = "routing"


def create(settings: RoutingSettings) -> FastAPI:
    client, database = connect(settings, NAME)
    store = RoutingStore(database)
    broker = make_broker(settings, NAME)
    consumer = EventConsumer(broker, settings, NAME, [settings.topics.tickets])
    consumer.on(TicketSubmitted, EventHandlers(store, broker, settings.topics).on_ticket_submitted)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.ensure_indexes()
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
            await client.close()

    app = service.create_app(NAME, lifespan, "Where each ticket goes, and why.")
    app.include_router(routes(Authenticator(settings.auth_secret.get_secret_value())))
    return app


def run() -> None:
    settings = RoutingSettings()
    service.configure_logging(settings.log_level)
    service.run(create(settings), settings.http_host, settings.http_port, settings.log_level)
