"""notify: tells enterprises, departments and supervisors, once, on every channel."""

from datetime import UTC, datetime

from fastapi import FastAPI

from services.notify.config import NotifySettings
from services.notify.delivery import (
    Dispatcher,
    MailTarget,
    Retries,
    SmsTarget,
    SubscribedWebhooks,
    WebhookTarget,
)
from services.notify.domain import check_templates
from services.notify.handlers import (
    DeliveryOwnership,
    EventHandlers,
    routes,
    subscription_routes,
)
from services.notify.store import NotifyStore
from services.notify.subscriptions import SecretBox
from services.notify.templates import Templates
from shared import service
from shared.events import (
    Channel,
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
    webhook_retries = Retries(
        settings.webhook_attempts,
        settings.webhook_timeout_seconds,
        settings.webhook_backoff_base_seconds,
    )
    webhook = None
    if settings.webhook_url and settings.webhook_secret:
        secret = settings.webhook_secret.get_secret_value()
        webhook = WebhookTarget(settings.webhook_url, secret, webhook_retries)
    mail = None
    if settings.smtp_host:
        mail = MailTarget(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            sender=settings.smtp_sender,
            retries=Retries(
                settings.smtp_attempts,
                settings.smtp_timeout_seconds,
                settings.smtp_backoff_base_seconds,
            ),
        )
    sms = None
    if settings.sms_gateway_url and settings.sms_api_key:
        sms = SmsTarget(
            url=settings.sms_gateway_url,
            api_key=settings.sms_api_key.get_secret_value(),
            retries=Retries(
                settings.sms_attempts,
                settings.sms_timeout_seconds,
                settings.sms_backoff_base_seconds,
            ),
        )
    box = SecretBox(settings.auth_secret.get_secret_value())
    subscribed = SubscribedWebhooks(store, box, webhook_retries)
    dispatcher = Dispatcher(store, broker, settings.topics, webhook, mail, sms, utc_now, subscribed)
    configured = {Channel.WEBHOOK: webhook, Channel.EMAIL: mail, Channel.SMS: sms}
    outbound = {channel for channel, target in configured.items() if target is not None}
    templates = Templates.load(settings.messages_file)
    check_templates(templates)
    handlers = EventHandlers(
        store,
        dispatcher,
        outbound,
        templates,
        settings.muted_messages,
        settings.contact_wait_seconds,
        utc_now,
    )
    consumer = EventConsumer(
        broker,
        settings,
        NAME,
        [settings.topics.tickets, settings.topics.sla],
        listener=DeliveryOwnership(dispatcher, handlers),
        workers=settings.consumer_workers,
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

    app = service.wired_app(
        settings,
        NAME,
        "Notifications and the in-app inbox.",
        service.Wiring(
            broker,
            client,
            credentials,
            consumer,
            store.ensure_indexes,
            before_stop=[dispatcher.close],
        ),
    )
    app.include_router(routes(store, auth))
    app.include_router(subscription_routes(store, auth, box))
    return app


def run() -> None:
    service.serve(NAME, NotifySettings(), create)
