"""notify: tells enterprises, departments and supervisors, once, on every channel."""

from datetime import UTC, datetime

from fastapi import FastAPI

from services.notify.config import NotifySettings
from services.notify.delivery import Dispatcher, WebhookTarget
from services.notify.handlers import DeliveryOwnership, EventHandlers, routes
from services.notify.store import NotifyStore
from shared import service
from shared.events import (
    SlaBreached,
    SlaFirstResponseMissed,
    SlaWarning,
    TicketInformationRequested,
    TicketReopened,
    TicketResolved,
    TicketRouted,
    TicketSubmitted,
    TicketTransferred,
)
from shared.kafka import EventConsumer, make_broker
from shared.mongo import connect

NAME = "notify"


def utc_now() -> datetime:
    return datetime.now(UTC)


def create(settings: NotifySettings) -> FastAPI:
    auth, credentials = service.authentication(settings)
    client, database = connect(settings, NAME)
    store = NotifyStore(database)
    broker = make_broker(settings, NAME)
    webhook = None
    if settings.webhook_url:
        if settings.webhook_secret is None:
            raise ValueError("PARKDESK_WEBHOOK_SECRET is required with PARKDESK_WEBHOOK_URL")
        webhook = WebhookTarget(
            url=settings.webhook_url,
            secret=settings.webhook_secret.get_secret_value(),
            attempts=settings.webhook_attempts,
            timeout_seconds=settings.webhook_timeout_seconds,
            backoff_base_seconds=settings.webhook_backoff_base_seconds,
        )
    dispatcher = Dispatcher(store, broker, settings.topics, webhook, utc_now)
    handlers = EventHandlers(
        store, dispatcher, webhook is not None, settings.contact_wait_seconds, utc_now
    )
    consumer = EventConsumer(
        broker,
        settings,
        NAME,
        [settings.topics.tickets, settings.topics.sla],
        listener=DeliveryOwnership(dispatcher),
    )
    consumer.on(TicketSubmitted, handlers.on_ticket_submitted)
    for told in (
        TicketRouted,
        SlaWarning,
        SlaBreached,
        SlaFirstResponseMissed,
        TicketInformationRequested,
        TicketResolved,
        TicketTransferred,
        TicketReopened,
    ):
        consumer.on(told, handlers.on_event)

    app = service.create_app(
        NAME,
        service.lifespan(
            broker, client, credentials, store.ensure_indexes, before_stop=[dispatcher.close]
        ),
        "Notifications and the in-app inbox.",
    )
    app.include_router(routes(store, auth))
    return app


def run() -> None:
    service.serve(NotifySettings(), create)
