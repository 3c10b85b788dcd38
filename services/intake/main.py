"""intake: frontends and enterprises open tickets here; it stores each one and publishes it."""

from datetime import timedelta

from fastapi import FastAPI

from services.intake.config import IntakeSettings
from services.intake.handlers import EventHandlers, credential_routes, routes
from services.intake.relay import OutboxRelay, OutboxSweep
from services.intake.store import IntakeStore
from shared import service
from shared.events import (
    Event,
    SlaBreached,
    SlaFirstResponseMissed,
    SlaMet,
    SlaPaused,
    SlaResumed,
    SlaStarted,
    SlaWarning,
    TicketAcknowledged,
    TicketClosed,
    TicketCommented,
    TicketInformationProvided,
    TicketInformationRequested,
    TicketReopened,
    TicketResolved,
    TicketRouted,
    TicketSubmitted,
    TicketTransferred,
    TicketTransferRefused,
)
from shared.kafka import EventConsumer, make_broker
from shared.mongo import connect

NAME = "intake"

OWN_EVENTS: tuple[type[Event], ...] = (
    TicketSubmitted,
    TicketAcknowledged,
    TicketCommented,
    TicketInformationRequested,
    TicketInformationProvided,
    TicketTransferred,
    TicketResolved,
    TicketClosed,
    TicketReopened,
)
"""What intake itself published: back from Kafka, they update the read model."""

LEARNED_EVENTS: tuple[type[Event], ...] = (
    TicketRouted,
    TicketTransferRefused,
    SlaStarted,
    SlaWarning,
    SlaBreached,
    SlaFirstResponseMissed,
    SlaPaused,
    SlaResumed,
    SlaMet,
)
"""What other services published about a ticket: kept, for its state and history."""


def create(settings: IntakeSettings) -> FastAPI:
    auth, credentials = service.authentication(settings)
    client, database = connect(settings, NAME)
    store = IntakeStore(database)
    broker = make_broker(settings, NAME)
    relay = OutboxRelay(store, broker, settings.topics.tickets, settings.relay_batch_size)
    sweep = OutboxSweep(
        store,
        relay,
        interval=timedelta(seconds=settings.outbox_sweep_seconds),
        grace=timedelta(seconds=settings.outbox_sweep_grace_seconds),
    )
    # One consumer of both topics: a ticket's read model is folded from its events on both,
    # so they must be handled one at a time.
    consumer = EventConsumer(broker, settings, NAME, [settings.topics.tickets, settings.topics.sla])
    handlers = EventHandlers(store)
    for own in OWN_EVENTS:
        consumer.on(own, handlers.on_own_event)
    for learned in LEARNED_EVENTS:
        consumer.on(learned, handlers.on_learned_event)

    app = service.wired_app(
        settings,
        NAME,
        "Open tickets and follow them.",
        service.Wiring(
            broker,
            client,
            credentials,
            consumer,
            store.ensure_indexes,
            background=[relay.run, sweep.run],
        ),
    )
    app.include_router(
        routes(
            store,
            relay,
            auth,
            timedelta(seconds=settings.resolution_target_seconds),
            timedelta(seconds=settings.reopen_window_seconds),
        )
    )
    app.include_router(
        credential_routes(
            credentials,
            broker,
            settings.topics.credentials,
            settings.auth_secret.get_secret_value(),
            auth,
        )
    )
    return app


def run() -> None:
    service.serve(NAME, IntakeSettings(), create)
