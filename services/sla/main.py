"""sla: a clock per ticket against the 24-hour promise; warns before, escalates after."""

from datetime import UTC, datetime

from fastapi import FastAPI

from services.sla.config import SlaSettings
from services.sla.feed import SlaFeed
from services.sla.handlers import (
    ClockOwnership,
    EventHandlers,
    board_routes,
    report_routes,
    routes,
)
from services.sla.store import SlaStore
from shared import service
from shared.events import (
    TicketAcknowledged,
    TicketClosed,
    TicketInformationProvided,
    TicketInformationRequested,
    TicketReopened,
    TicketResolved,
    TicketRouted,
    TicketTransferred,
    TicketTransferRefused,
)
from shared.kafka import EventConsumer, make_broker
from shared.mongo import connect

NAME = "sla"


def utc_now() -> datetime:
    return datetime.now(UTC)


def create(settings: SlaSettings) -> FastAPI:
    auth, credentials = service.authentication(settings)
    client, database = connect(settings, NAME)
    policy = settings.policy()
    store = SlaStore(database, policy.calendar)
    broker = make_broker(settings, NAME)
    handlers = EventHandlers(store, broker, settings.topics, policy, utc_now)
    feed = SlaFeed(settings.kafka_bootstrap_servers, settings.topics.spec(settings.topics.sla))
    consumer = EventConsumer(
        broker,
        settings,
        NAME,
        [settings.topics.tickets],
        listener=ClockOwnership(store, handlers.scheduler, settings.topics.tickets),
    )
    consumer.on(TicketRouted, handlers.on_ticket_routed)
    consumer.on(TicketAcknowledged, handlers.on_ticket_acknowledged)
    consumer.on(TicketInformationRequested, handlers.on_information_requested)
    consumer.on(TicketInformationProvided, handlers.on_information_provided)
    consumer.on(TicketResolved, handlers.on_ticket_resolved)
    consumer.on(TicketClosed, handlers.on_ticket_closed)
    consumer.on(TicketReopened, handlers.on_ticket_reopened)
    consumer.on(TicketTransferred, handlers.on_ticket_transferred)
    consumer.on(TicketTransferRefused, handlers.on_transfer_refused)

    app = service.wired_app(
        settings,
        NAME,
        "The 24-hour clock of every ticket.",
        service.Wiring(
            broker,
            client,
            credentials,
            consumer,
            store.ensure_indexes,
            background=[handlers.scheduler.run, feed.run],
            checks={"board_feed": feed.following},
        ),
    )
    app.include_router(routes(store, auth))
    app.include_router(report_routes(store, auth, utc_now))
    app.include_router(board_routes(store, feed, auth, utc_now))
    return app


def run() -> None:
    service.serve(NAME, SlaSettings(), create)
