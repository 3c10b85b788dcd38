"""intake: frontends and enterprises open tickets here; it stores each one and publishes it."""

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

    app = service.create_app(
        NAME,
        service.lifespan(
            broker,
            client,
            store.ensure_indexes,
            background=[relay.run] if settings.relay_enabled else [],
        ),
        "Open tickets and follow them.",
    )
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
    service.serve(IntakeSettings(), create)
