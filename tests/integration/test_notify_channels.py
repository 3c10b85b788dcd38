"""notify's outbound channels to enterprises against real peers on loopback, with the real store
and broker: e-mail to an SMTP server (aiosmtpd) and text messages to an HTTP SMS gateway, each
delivered in the contact's language, retried when the peer says later, and dead-lettered when it
says never."""

import asyncio
import json
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import partial
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from services.notify.delivery import Dispatcher, MailTarget, Retries, SmsTarget, WebhookTarget
from services.notify.domain import contact_of, messages_for
from services.notify.handlers import EventHandlers
from services.notify.store import NotifyStore
from services.notify.templates import Templates
from shared.events import Channel, Language, TicketSubmitted
from shared.kafka import Source, make_broker
from shared.settings import CommonSettings
from tests.conftest import TopicWatcher
from tests.harness import WebhookReceiver
from tests.unit.samples import sample_routed, sample_ticket

pytestmark = pytest.mark.integration

QUICK = Retries(attempts=3, timeout_seconds=5, backoff_base_seconds=0.05)
"""Three attempts, with backoffs short enough for a test."""

TEMPLATES = Templates.load()


class Mailbox:
    """An SMTP server's handler: keeps what it accepts; refuses or defers addresses on cue."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.refuse: set[str] = set()
        self.defer_once: set[str] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, _: list[str]
    ) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if address in self.defer_once:
            self.defer_once.discard(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        return "250 Message accepted"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    with socket.socket() as probe:  # a free port: the controller checks it by connecting
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Mailbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
async def notify_store(mongo: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[NotifyStore]:
    name = "notify_email_" + secrets.token_hex(4)
    store = NotifyStore(mongo[name])
    await store.ensure_indexes()
    yield store
    await mongo.drop_database(name)


@pytest.fixture
async def dead_letters(settings: CommonSettings, watch: Callable[..., Any]) -> TopicWatcher:
    watcher: TopicWatcher = await watch(settings.topics.dead_letters)
    return watcher


@pytest.fixture
async def broker(settings: CommonSettings) -> AsyncIterator[KafkaBroker]:
    started = make_broker(settings, "notify-channels-test")
    await started.start()
    yield started
    await started.stop()


async def notification_for(
    store: NotifyStore, channel: Channel, language: Language, email: str, phone: str
) -> tuple[str, TicketSubmitted]:
    """Stores a submitted ticket's contact and its receipt on the channel; returns its id."""
    ticket = sample_ticket(language=language)
    ticket = ticket.model_copy(
        update={
            "ticket_id": f"T-01M8M3WQ6WQ4ZQ3FGCHBD{secrets.choice(range(10**5)):05d}",
            "contact": ticket.contact.model_copy(update={"email": email, "phone": phone}),
        }
    )
    event = TicketSubmitted(ticket_id=ticket.ticket_id, correlation_id="c", ticket=ticket)
    await store.remember_contact(event.ticket_id, contact_of(event))
    # Departments are the ones told by webhook: of the ticket routed to them.
    said = (
        sample_routed(ticket.submitted_at, ticket.ticket_id)
        if channel is Channel.WEBHOOK
        else event
    )
    [message] = [m for m in messages_for(said, None, {channel}, TEMPLATES) if m.channel is channel]
    notification = await store.record(said, message, "test:0", datetime.now(UTC))
    assert notification is not None
    return notification.id, event


async def submit(dispatcher: Dispatcher, store: NotifyStore, notification_id: str) -> None:
    [notification] = [n for n in await store.pending(["test:0"]) if n.id == notification_id]
    dispatcher.submit(notification)


def dead_lettered(watcher: TopicWatcher, notification_id: str) -> list[ConsumerRecord]:
    return [
        r
        for r in watcher.records
        if dict(r.headers).get("dlt-notification-id") == notification_id.encode()
    ]


async def delivered(store: NotifyStore, notification_id: str) -> dict[str, Any]:
    """How the notification's delivery ended, from its delivery log, once it has."""
    for _ in range(200):
        log = await store.delivery_log(notification_id)
        if log["outcome"] is not None:
            return {**log["outcome"], "retried": log["attempts"]}
        await asyncio.sleep(0.05)
    raise AssertionError(f"{notification_id} still pending")


async def test_emails_arrive_in_the_contacts_language_retried_or_dead_lettered(
    settings: CommonSettings,
    notify_store: NotifyStore,
    broker: KafkaBroker,
    mailbox: tuple[Mailbox, int],
    dead_letters: TopicWatcher,
) -> None:
    server, port = mailbox
    server.defer_once.add("deferred@example.com")
    server.refuse.add("gone@example.com")
    mail = MailTarget(
        host="127.0.0.1",
        port=port,
        starttls=False,
        username=None,
        password=None,
        sender="parkdesk@bzsp.example.cn",
        retries=QUICK,
    )
    dispatcher = Dispatcher(
        notify_store, broker, settings.topics, None, mail, None, lambda: datetime.now(UTC)
    )
    try:
        sent = {
            address: await notification_for(
                notify_store, Channel.EMAIL, language, address, "+86 138 0000 0000"
            )
            for address, language in [
                ("li.na@example.com", Language.ZH),
                ("jane@example.com", Language.EN),
                ("deferred@example.com", Language.EN),
                ("gone@example.com", Language.ZH),
            ]
        }
        for notification_id, _ in sent.values():
            await submit(dispatcher, notify_store, notification_id)
        logs = {a: await delivered(notify_store, n) for a, (n, _) in sent.items()}
    finally:
        await dispatcher.close()

    by_address = {message["To"]: message for message in server.received}
    assert sorted(by_address) == ["deferred@example.com", "jane@example.com", "li.na@example.com"]
    chinese = by_address["li.na@example.com"]
    assert chinese["Subject"] == f"工单 {sent['li.na@example.com'][1].ticket_id} 已受理"
    assert chinese["Content-Language"] == "zh"
    assert "北京时间" in chinese.get_content()
    english = by_address["jane@example.com"]
    assert english["Subject"] == f"Ticket {sent['jane@example.com'][1].ticket_id} received"
    assert "Beijing time" in english.get_content()
    assert english["X-Parkdesk-Notification-Id"].strip() == sent["jane@example.com"][0]

    assert (logs["li.na@example.com"]["status"], logs["li.na@example.com"]["attempts"]) == (
        "delivered",
        1,
    )
    assert (logs["deferred@example.com"]["status"], logs["deferred@example.com"]["attempts"]) == (
        "delivered",
        2,
    )
    refused = logs["gone@example.com"]
    assert (refused["status"], refused["attempts"]) == ("failed", 1)
    assert "550" in refused["last_error"]
    assert "gone@example.com" not in refused["last_error"]
    gone_id = sent["gone@example.com"][0]
    await dead_letters.wait_for(
        lambda w: bool(dead_lettered(w, gone_id)),
        within=15,
        what="the refused e-mail on the dead-letter topic",
    )
    [letter] = dead_lettered(dead_letters, gone_id)
    assert b"gone@example.com" not in dict(letter.headers)["dlt-reason"]


async def test_text_messages_go_through_the_gateway_retried_on_5xx_and_final_on_4xx(
    settings: CommonSettings,
    notify_store: NotifyStore,
    broker: KafkaBroker,
    dead_letters: TopicWatcher,
) -> None:
    with WebhookReceiver() as gateway:
        sms = SmsTarget(
            url=gateway.url,
            api_key="gateway-key-123",
            retries=QUICK,
        )
        dispatcher = Dispatcher(
            notify_store, broker, settings.topics, None, None, sms, lambda: datetime.now(UTC)
        )
        try:
            # One at a time, so that the gateway's queued answers go to the right one.
            gateway.responses = [503]
            later_id, later = await notification_for(
                notify_store, Channel.SMS, Language.ZH, "a@example.com", "+86 138 0000 0001"
            )
            await submit(dispatcher, notify_store, later_id)
            later_log = await delivered(notify_store, later_id)
            gateway.responses = [400]
            never_id, _ = await notification_for(
                notify_store, Channel.SMS, Language.EN, "b@example.com", "+86 138 0000 0002"
            )
            await submit(dispatcher, notify_store, never_id)
            never_log = await delivered(notify_store, never_id)
        finally:
            await dispatcher.close()

    first, second, refused = gateway.requests
    assert first.body == second.body
    sent = json.loads(first.body)
    assert sent["to"] == "+86 138 0000 0001"
    assert sent["reference"] == later_id
    assert sent["text"].startswith(f"工单 {later.ticket_id} 已受理: ")
    assert first.headers["Authorization"] == "Bearer gateway-key-123"
    assert json.loads(refused.body)["to"] == "+86 138 0000 0002"
    assert (later_log["status"], later_log["attempts"]) == ("delivered", 2)
    assert [a["error"] for a in later_log["retried"]] == ["HTTP 503"]
    assert (never_log["status"], never_log["attempts"], never_log["last_error"]) == (
        "failed",
        1,
        "HTTP 400 (after 1 attempt)",
    )
    await dead_letters.wait_for(
        lambda w: bool(dead_lettered(w, never_id)), within=15, what="the refused text"
    )


async def test_two_instances_told_the_same_event_at_once_notify_once(
    settings: CommonSettings,
    notify_store: NotifyStore,
    broker: KafkaBroker,
    mailbox: tuple[Mailbox, int],
) -> None:
    """Two notify instances (a rebalance, or a redelivery racing the first delivery) handle
    one event at the same moment: the store's unique key lets one of them record and send."""
    server, port = mailbox
    mail = MailTarget("127.0.0.1", port, False, None, None, "parkdesk@bzsp.example.cn", QUICK)
    dispatchers = [
        Dispatcher(
            notify_store, broker, settings.topics, None, mail, None, lambda: datetime.now(UTC)
        )
        for _ in range(2)
    ]
    instances = [
        EventHandlers(notify_store, d, {Channel.EMAIL}, TEMPLATES, (), 0, lambda: datetime.now(UTC))
        for d in dispatchers
    ]
    ticket = sample_ticket().model_copy(
        update={"ticket_id": f"T-01M8M3WQ6WQ4ZQ3FGCHBD{secrets.choice(range(10**5)):05d}"}
    )
    event = TicketSubmitted(ticket_id=ticket.ticket_id, correlation_id="c", ticket=ticket)
    source = Source(settings.topics.tickets, 0, 0)
    try:
        await asyncio.gather(*(each.on_ticket_submitted(event, source) for each in instances))
        for dispatcher in dispatchers:
            await dispatcher.drain()
    finally:
        for dispatcher in dispatchers:
            await dispatcher.close()

    stored = await notify_store.pending([f"{settings.topics.tickets}:0"])
    logs = [
        await notify_store.delivery_log(f"{event.event_id}:enterprise:E-1:{c}")
        for c in ("inbox", "email")
    ]
    assert stored == []  # both ended
    assert [log["outcome"]["status"] for log in logs] == ["delivered", "delivered"]
    assert [m["X-Parkdesk-Ticket-Id"] for m in server.received] == [ticket.ticket_id]


async def test_webhooks_retry_5xx_with_backoff_and_give_up_on_4xx_or_after_the_last_attempt(
    settings: CommonSettings,
    notify_store: NotifyStore,
    broker: KafkaBroker,
    dead_letters: TopicWatcher,
) -> None:
    outcomes = {}
    with WebhookReceiver() as hook:
        webhook = WebhookTarget(hook.url, "shared-webhook-secret", QUICK)
        dispatcher = Dispatcher(
            notify_store, broker, settings.topics, webhook, None, None, lambda: datetime.now(UTC)
        )
        try:
            # One at a time, so that the receiver's queued answers go to the right one.
            for case, answers in [
                ("recovers", [500, 502]),
                ("refused", [404]),
                ("down", [503] * 3),
            ]:
                hook.responses = list(answers)
                notification_id, _ = await notification_for(
                    notify_store, Channel.WEBHOOK, Language.ZH, "a@example.com", "+86 1"
                )
                await submit(dispatcher, notify_store, notification_id)
                outcomes[case] = (notification_id, await delivered(notify_store, notification_id))
        finally:
            await dispatcher.close()

    recovered, refused, down = (outcomes[c][1] for c in ("recovers", "refused", "down"))
    assert (recovered["status"], recovered["attempts"]) == ("delivered", 3)
    assert [a["error"] for a in recovered["retried"]] == ["HTTP 500", "HTTP 502"]
    assert (refused["status"], refused["attempts"], refused["retried"]) == ("failed", 1, [])
    assert (down["status"], down["attempts"]) == ("failed", 3)
    assert down["last_error"] == "HTTP 503 (after 3 attempts)"
    for gone in (outcomes["refused"][0], outcomes["down"][0]):
        await dead_letters.wait_for(
            partial(lambda w, n: bool(dead_lettered(w, n)), n=gone),
            within=15,
            what=f"{gone} on the dead-letter topic",
        )
