"""routing: decides which department owns each submitted ticket and hands it over."""

from datetime import UTC, datetime
from functools import partial

from fastapi import FastAPI

from services.routing.config import RoutingSettings
from services.routing.handlers import EventHandlers, routes
from services.routing.reloader import PolicyHolder
from services.routing.store import RoutingStore
from shared import service
from shared.events import FORWARDED_ACTIONS, TicketSubmitted, TicketTransferred
from shared.kafka import EventConsumer, make_broker
from shared.mongo import connect

NAME = "routing"


def utc_now() -> datetime:
    return datetime.now(UTC)


def create(settings: RoutingSettings) -> FastAPI:
    policies = PolicyHolder(settings.policy_file)
    auth, credentials = service.authentication(settings)
    client, database = connect(settings, NAME)
    store = RoutingStore(database)
    broker = make_broker(settings, NAME)
    handlers = EventHandlers(store, broker, settings.topics, policies, utc_now)
    consumer = EventConsumer(
        broker, settings, NAME, [settings.topics.tickets], workers=settings.consumer_workers
    )
    consumer.on(TicketSubmitted, handlers.on_ticket_submitted)
    consumer.on(TicketTransferred, handlers.on_ticket_transferred)
    for action in FORWARDED_ACTIONS:
        consumer.on(action, handlers.on_ticket_action)

    app = service.wired_app(
        settings,
        NAME,
        "Where each ticket goes, and why.",
        service.Wiring(
            broker,
            client,
            credentials,
            consumer,
            store.ensure_indexes,
            background=[partial(policies.watch, settings.policy_check_seconds)],
        ),
    )
    app.include_router(routes(store, policies, auth))
    return app


def run() -> None:
    service.serve(NAME, RoutingSettings(), create)
