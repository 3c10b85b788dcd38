"""Delivery, off the consumer's path: the consumer stores a notification and hands it here, so a
slow webhook never stalls a partition.

A webhook is an HTTP POST of the notification as JSON, signed with HMAC-SHA256 over
`<timestamp>.<body>` (headers `X-Parkdesk-Timestamp`, `X-Parkdesk-Signature: sha256=<hex>`).
5xx answers and timeouts are retried with exponential backoff and jitter; a 4xx is final.

An e-mail goes over SMTP (STARTTLS and AUTH when configured) to the ticket's contact, as UTF-8
plain text with its subject encoded for any mail reader; a 4xx SMTP reply or a lost connection
is retried the same way, a 5xx reply is final.

A text message is an HTTP POST to the SMS gateway (`{"to", "text", "reference"}`, the API key
as a bearer token), retried like a webhook.

A notification that cannot be delivered is marked failed and recorded on the dead-letter topic
with the reason (addresses masked). Each delivery is announced with `notification.sent`.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib
import httpx
from faststream.kafka import KafkaBroker

from services.notify.store import Notification, NotifyStore
from services.notify.subscriptions import SecretBox
from shared.events import Channel, Event, NotificationSent
from shared.kafka import backoff_seconds, publish
from shared.metrics import NOTIFICATIONS
from shared.topics import Topics

log = logging.getLogger("parkdesk.notify.delivery")


@dataclass(frozen=True, slots=True)
class Retries:
    """How a channel's peer is tried: attempts, the time one may take, and the base of the
    exponential backoff (with full jitter) between them."""

    attempts: int
    timeout_seconds: float
    backoff_base_seconds: float


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    secret: str
    retries: Retries


@dataclass(frozen=True, slots=True)
class MailTarget:
    host: str
    port: int
    starttls: bool
    username: str | None
    password: str | None
    sender: str
    retries: Retries


@dataclass(frozen=True, slots=True)
class SmsTarget:
    url: str
    api_key: str
    retries: Retries


SMS_MAX_CHARACTERS = 300
"""Longer texts are cut: a gateway splits them into several billed parts, or refuses them."""


@dataclass(frozen=True, slots=True)
class SubscribedWebhooks:
    """The webhooks departments registered, opened for delivery with the webhooks' retries."""

    store: NotifyStore
    box: SecretBox
    retries: Retries

    async def of(self, recipient: str) -> WebhookTarget | None:
        subscription = await self.store.subscription(recipient)
        if subscription is None or not subscription.webhook_url or not subscription.sealed_secret:
            return None
        secret = self.box.open(recipient, subscription.sealed_secret)
        return WebhookTarget(subscription.webhook_url, secret, self.retries)


class DeliveryFailed(Exception):
    def __init__(self, reason: str, retryable: bool, attempts: int = 1) -> None:
        super().__init__(reason)
        self.retryable = retryable
        self.attempts = attempts


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class Dispatcher:
    def __init__(
        self,
        store: NotifyStore,
        broker: KafkaBroker,
        topics: Topics,
        webhook: WebhookTarget | None,
        mail: MailTarget | None,
        sms: SmsTarget | None,
        now: Callable[[], datetime],
        subscribed_webhooks: "SubscribedWebhooks | None" = None,
        concurrency: int = 32,
    ) -> None:
        self._store = store
        self._broker = broker
        self._topics = topics
        self._webhook = webhook
        self._mail = mail
        self._sms = sms
        self._subscribed_webhooks = subscribed_webhooks
        self._now = now
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._http = httpx.AsyncClient()

    def submit(self, notification: Notification, recovered: bool = False) -> None:
        if notification.id not in self._in_flight:
            task = asyncio.create_task(self._deliver(notification, recovered))
            self._in_flight[notification.id] = task
            task.add_done_callback(lambda _: self._in_flight.pop(notification.id, None))

    async def recover(self, owners: Iterable[str]) -> None:
        """Resumes what a previous owner of these partitions stored but did not deliver."""
        for notification in await self._store.pending(owners):
            self.submit(notification, recovered=True)

    async def drain(self) -> None:
        """Waits until every delivery under way has ended, delivered or given up."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        await self._http.aclose()

    async def _deliver(self, notification: Notification, recovered: bool = False) -> None:
        async with self._slots:
            # What recovery found pending may have ended since it looked (a delivery of this
            # instance that finished meanwhile): sent again, a department would get it twice.
            if recovered and await self._store.has_ended(notification.id):
                return
            try:
                attempts = await self._send(notification)
            except DeliveryFailed as failure:
                await self._give_up(notification, str(failure), failure.attempts)
                return
            except Exception as exc:
                log.exception("delivering %s failed", notification.id)
                await self._give_up(notification, f"{type(exc).__name__}: {exc}", 1)
                return
            await publish(self._broker, self._topics.notifications, sent_event(notification))
            await self._store.mark_delivered(notification, attempts, self._now())
            NOTIFICATIONS.labels(notification.channel.value, "delivered").inc()

    async def _send(self, notification: Notification) -> int:
        """Delivers over the notification's channel; returns the attempts it took."""
        if notification.channel is Channel.INBOX:
            return 1  # Stored is delivered: the inbox is read from the store.
        outbound = {
            Channel.WEBHOOK: self._webhook,
            Channel.EMAIL: self._mail,
            Channel.SMS: self._sms,
        }
        target = outbound.get(notification.channel)
        if notification.channel is Channel.WEBHOOK and self._subscribed_webhooks:
            # A department's own webhook, registered through the API, before the shared one.
            target = await self._subscribed_webhooks.of(notification.recipient) or target
        if target is None:
            raise DeliveryFailed(f"no {notification.channel.value} channel configured", False)
        retries = target.retries
        for attempt in range(1, retries.attempts + 1):
            try:
                if isinstance(target, WebhookTarget):
                    await self._post(target, notification)
                elif isinstance(target, MailTarget):
                    await self._mail_to_contact(target, notification)
                else:
                    await self._text_contact(target, notification)
                return attempt
            except DeliveryFailed as failure:
                if not failure.retryable or attempt == retries.attempts:
                    raise DeliveryFailed(
                        f"{failure} (after {attempt} attempt{'s' if attempt > 1 else ''})",
                        retryable=False,
                        attempts=attempt,
                    ) from None
                await self._store.note_attempt(notification.id, attempt, str(failure), self._now())
                await asyncio.sleep(backoff_seconds(attempt, base=retries.backoff_base_seconds))
        raise AssertionError("unreachable")

    async def _mail_to_contact(self, mail: MailTarget, notification: Notification) -> None:
        contact = await self._store.contact(notification.ticket_id)
        if contact is None or not contact.email:
            raise DeliveryFailed("the ticket's contact has no e-mail address", retryable=False)
        try:
            await aiosmtplib.send(
                email_message(notification, mail.sender, contact.email),
                hostname=mail.host,
                port=mail.port,
                username=mail.username,
                password=mail.password,
                start_tls=mail.starttls,
                timeout=mail.retries.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [recipient.code for recipient in refused.recipients]
            raise DeliveryFailed(
                masked(f"SMTP recipient refused: {refused}"),
                retryable=all(400 <= code < 500 for code in codes),
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                masked(f"SMTP {exc.code}: {exc.message}"), retryable=400 <= exc.code < 500
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(masked(f"{type(exc).__name__}: {exc}"), retryable=True) from None

    async def _post(self, target: WebhookTarget, notification: Notification) -> None:
        body = json.dumps(webhook_body(notification), ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        await self._http_post(
            target.url,
            body,
            {
                "X-Parkdesk-Timestamp": timestamp,
                "X-Parkdesk-Signature": sign(target.secret, timestamp, body),
                "X-Parkdesk-Notification-Id": notification.id,
            },
            target.retries.timeout_seconds,
        )

    async def _text_contact(self, target: SmsTarget, notification: Notification) -> None:
        contact = await self._store.contact(notification.ticket_id)
        if contact is None or not contact.phone:
            raise DeliveryFailed("the ticket's contact has no phone number", retryable=False)
        body = {
            "to": contact.phone,
            "text": sms_text(notification),
            "reference": notification.id,
        }
        await self._http_post(
            target.url,
            json.dumps(body, ensure_ascii=False).encode(),
            {"Authorization": f"Bearer {target.api_key}"},
            target.retries.timeout_seconds,
        )

    async def _http_post(
        self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float
    ) -> None:
        """POSTs JSON; a 5xx or a timeout may pass (retryable), a 4xx will not."""
        try:
            response = await self._http.post(
                url,
                content=body,
                headers={"Content-Type": "application/json; charset=utf-8", **headers},
                timeout=timeout_seconds,
            )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}", retryable=True) from None
        if response.status_code >= 500:
            raise DeliveryFailed(f"HTTP {response.status_code}", retryable=True)
        if response.status_code >= 400:
            raise DeliveryFailed(f"HTTP {response.status_code}", retryable=False)

    async def _give_up(self, notification: Notification, reason: str, attempts: int) -> None:
        """Dead-letters the notification, then marks it failed: in that order, as a delivery is
        announced before it is marked delivered, so that a delivery stopped in between (its
        instance stopping or dying) is found pending and ended again, never ended unannounced."""
        log.error("notification %s undeliverable: %s", notification.id, reason)
        body = json.dumps(webhook_body(notification), ensure_ascii=False).encode()
        await self._broker.publish(
            body,
            self._topics.dead_letters,
            key=notification.ticket_id.encode(),
            headers={
                "dlt-reason": reason[:2000],
                "dlt-service": "notify",
                "dlt-notification-id": notification.id,
            },
        )
        await self._store.mark_failed(notification, attempts, reason, self._now())
        NOTIFICATIONS.labels(notification.channel.value, "failed").inc()


def email_message(notification: Notification, sender: str, to: str) -> EmailMessage:
    """The e-mail of a notification: UTF-8 text, the subject encoded (RFC 2047) by the e-mail
    policy, in the recipient's language."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = notification.subject
    message["Date"] = format_datetime(notification.created_at)
    message["Message-ID"] = make_msgid(notification.id.split(":")[0], sender.rpartition("@")[2])
    message["X-Parkdesk-Notification-Id"] = notification.id
    message["X-Parkdesk-Ticket-Id"] = notification.ticket_id
    # base64: a relay without 8BITMIME passes it unchanged.
    message.set_content(notification.body, charset="utf-8", cte="base64")
    # After set_content, which replaces every Content-* header.
    message["Content-Language"] = notification.language.value
    return message


def sms_text(notification: Notification) -> str:
    text = f"{notification.subject}: {notification.body}"
    if len(text) > SMS_MAX_CHARACTERS:
        text = text[: SMS_MAX_CHARACTERS - 1] + "…"
    return text


EMAIL_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def masked(text: str) -> str:
    """The text with every e-mail address in it masked: reasons are logged and dead-lettered."""
    return EMAIL_ADDRESS.sub("<address>", text)


def webhook_body(notification: Notification) -> dict[str, str]:
    """The documented webhook payload."""
    return {
        "notification_id": notification.id,
        "ticket_id": notification.ticket_id,
        "recipient": notification.recipient,
        "language": notification.language.value,
        "subject": notification.subject,
        "body": notification.body,
        "trigger_type": notification.trigger_type,
        "trigger_event_id": notification.trigger_event_id,
        "correlation_id": notification.correlation_id,
    }


def sent_event(notification: Notification) -> NotificationSent:
    return NotificationSent(
        event_id=Event.derived_id(notification.id, "sent"),
        ticket_id=notification.ticket_id,
        correlation_id=notification.correlation_id,
        notification_id=notification.id,
        recipient=notification.recipient,
        channel=notification.channel,
        trigger_event_id=uuid.UUID(notification.trigger_event_id),
        trigger_type=notification.trigger_type,
    )
