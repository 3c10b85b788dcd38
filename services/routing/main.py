"""routing: decides which department owns each submitted ticket and hands it over."""

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

    app = service.create_app(
        NAME,
        service.lifespan(broker, client, store.ensure_indexes),
        "Where each ticket goes, and why.",
    )
    app.include_router(routes(Authenticator(settings.auth_secret.get_secret_value())))
    return app


def run() -> None:
    service.serve(RoutingSettings(), create)
