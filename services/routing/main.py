"""routing: decides which department owns each submitted ticket and hands it over."""

from datetime import UTC, datetime
from functools import partial

from fastapi import FastAPI

from services.routing.config import RoutingSettings
from services.routing.handlers import EventHandlers, routes
from services.routing.knowledge import load_knowledge
from services.routing.learning import shipped_labelled, shipped_labelled_digest
from services.routing.models import RouterHolder
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
    knowledge = load_knowledge(settings.profiles_dir)  # refuse to start on a bad profile
    auth, credentials = service.authentication(settings)
    client, database = connect(settings, NAME)
    store = RoutingStore(database)
    routers = RouterHolder(
        policies,
        knowledge,
        shipped_labelled(),
        shipped_labelled_digest(),
        store,
        settings.triage_threshold,
        utc_now,
        settings.retrain_tolerance,
        settings.model_cache_dir,
    )
    broker = make_broker(settings, NAME)
    handlers = EventHandlers(store, broker, settings.topics, routers, utc_now)
    consumer = EventConsumer(
        broker, settings, NAME, [settings.topics.tickets], workers=settings.consumer_workers
    )
    consumer.on(TicketSubmitted, handlers.on_ticket_submitted)
    consumer.on(TicketTransferred, handlers.on_ticket_transferred)
    for action in FORWARDED_ACTIONS:
        consumer.on(action, handlers.on_ticket_action)

    async def prepare() -> None:
        await store.ensure_indexes()
        await routers.start()  # a model before the first ticket is consumed

    background = [
        partial(policies.watch, settings.policy_check_seconds),
        partial(routers.follow, settings.model_check_seconds),
    ]
    if settings.retrain_every_seconds:
        background.append(partial(routers.retrain_every, settings.retrain_every_seconds))
    app = service.wired_app(
        settings,
        NAME,
        "Where each ticket goes, and why.",
        service.Wiring(broker, client, credentials, consumer, prepare, background=background),
    )
    app.include_router(routes(store, policies, routers, auth))
    return app


def run() -> None:
    service.serve(NAME, RoutingSettings(), create)
