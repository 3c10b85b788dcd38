"""notify's e-mail channel against a real SMTP server (aiosmtpd) on loopback, with the real
store and broker: delivery in both languages, a retried 4xx, and a refused address
dead-lettered without the address."""

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pymongo import AsyncMongoClient

from services.notify.delivery import Dispatcher, MailTarget
from services.notify.domain import contact_of, messages_for
from services.notify.store import NotifyStore
from shared.events import Channel, Language, TicketSubmitted
from shared.kafka import make_broker
from shared.settings import CommonSettings
from tests.conftest import TopicWatcher
from tests.unit.samples import sample_ticket

pytestmark = pytest.mark.integration


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


async def email_for(
    store: NotifyStore, address: str, language: Language
) -> tuple[str, TicketSubmitted]:
    """Stores a submitted ticket's contact and its receipt e-mail; returns the e-mail's id."""
    ticket = sample_ticket(language=language)
    ticket = ticket.model_copy(
        update={
            "ticket_id": f"T-01M8M3WQ6WQ4ZQ3FGCHBD{secrets.choice(range(10**5)):05d}",
            "contact": ticket.contact.model_copy(update={"email": address}),
        }
    )
    event = TicketSubmitted(ticket_id=ticket.ticket_id, correlation_id="c", ticket=ticket)
    await store.remember_contact(event.ticket_id, contact_of(event))
    [email] = [m for m in messages_for(event, None, {Channel.EMAIL}) if m.channel is Channel.EMAIL]
    notification = await store.record(event, email, "test:0", datetime.now(UTC))
    assert notification is not None
    return notification.id, event


async def delivered(
    mongo: AsyncMongoClient[dict[str, Any]], store_name: str, notification_id: str
) -> dict[str, Any]:
    for _ in range(200):
        document = await mongo[store_name]["notifications"].find_one({"_id": notification_id})
        if document and document["status"] != "pending":
            return document
        await asyncio.sleep(0.05)
    raise AssertionError(f"{notification_id} still pending")


async def test_emails_arrive_in_the_contacts_language_retried_or_dead_lettered(
    settings: CommonSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
    notify_store: NotifyStore,
    mailbox: tuple[Mailbox, int],
    watch: Callable[..., Any],
) -> None:
    server, port = mailbox
    server.defer_once.add("deferred@example.com")
    server.refuse.add("gone@example.com")
    dead_letters: TopicWatcher = await watch(settings.topics.dead_letters)
    broker = make_broker(settings, "notify-email-test")
    await broker.start()
    mail = MailTarget(
        host="127.0.0.1",
        port=port,
        starttls=False,
        username=None,
        password=None,
        sender="parkdesk@bzsp.example.cn",
        attempts=3,
        timeout_seconds=5,
        backoff_base_seconds=0.05,
    )
    dispatcher = Dispatcher(
        notify_store, broker, settings.topics, None, mail, lambda: datetime.now(UTC)
    )
    store_name = notify_store._notifications.database.name
    try:
        sent = {
            address: await email_for(notify_store, address, language)
            for address, language in [
                ("li.na@example.com", Language.ZH),
                ("jane@example.com", Language.EN),
                ("deferred@example.com", Language.EN),
                ("gone@example.com", Language.ZH),
            ]
        }
        for notification_id, _ in sent.values():
            [notification] = [
                n for n in await notify_store.pending(["test:0"]) if n.id == notification_id
            ]
            dispatcher.submit(notification)
        logs = {a: await delivered(mongo, store_name, n) for a, (n, _) in sent.items()}
    finally:
        await dispatcher.close()
        await broker.stop()

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
        lambda w: any(
            dict(r.headers).get("dlt-notification-id") == gone_id.encode() for r in w.records
        ),
        within=15,
        what="the refused e-mail on the dead-letter topic",
    )
    [letter] = [
        r
        for r in dead_letters.records
        if dict(r.headers).get("dlt-notification-id") == gone_id.encode()
    ]
    assert b"gone@example.com" not in dict(letter.headers)["dlt-reason"]
