"""notify's own database.

- `notifications`: one document per (event, recipient, channel) under that key, so that no
  redelivery, restart or second instance can make a second one. Each records the Kafka
  partition of the event that caused it: the instance that owns the partition delivers it.
- the delivery log beside it: `attempts` (each failed attempt that will be retried, with its
  error) and `outcomes` (delivered or failed, attempts, last error, time), one per
  notification; `reads`, one per inbox item read.
- `contacts`: what notify needs to reach a ticket's enterprise, learned from `ticket.submitted`.
- `subscriptions`: a recipient's channels (and a department's own webhook), written by
  administrators; the only documents replaced in place, being few.

Everything else is an insert under a unique key, never an update: an insert that finds its key
taken says the work was done, where FerretDB applies an update as read, change, write back,
unconditioned. (FerretDB v1.24 as published also scanned the whole collection for an update by
`_id`, so a log kept by updates slowed delivery with every notification ever sent: 180
deliveries/s with 300 stored, 84/s with 1,000; the local build is patched, see
deploy/local/ferretdb-sqlite-id-index.patch.)
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.notify.domain import EnterpriseContact, Message
from services.notify.subscriptions import Subscription
from shared.events import Channel, Event, Language
from shared.mongo import Document, insert_all_once, insert_once

DELIVERED, FAILED = "delivered", "failed"


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    ticket_id: str
    correlation_id: str
    recipient: str
    channel: Channel
    language: Language
    subject: str
    body: str
    trigger_event_id: str
    trigger_type: str
    owner: str
    """`<topic>:<partition>` of the triggering event."""
    created_at: datetime
    read: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ticket_id": self.ticket_id,
            "recipient": self.recipient,
            "channel": self.channel.value,
            "language": self.language.value,
            "subject": self.subject,
            "body": self.body,
            "trigger_type": self.trigger_type,
            "created_at": self.created_at,
            "read": self.read,
        }


class NotifyStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._notifications = database["notifications"]
        self._attempts = database["attempts"]
        self._outcomes = database["outcomes"]
        self._reads = database["reads"]
        self._contacts = database["contacts"]
        self._subscriptions = database["subscriptions"]

    async def ensure_indexes(self) -> None:
        await self._notifications.create_index(
            [("recipient", ASCENDING), ("channel", ASCENDING), ("created_at", DESCENDING)]
        )
        await self._notifications.create_index([("owner", ASCENDING)])
        await self._outcomes.create_index([("owner", ASCENDING)])
        await self._attempts.create_index([("notification_id", ASCENDING)])
        await self._reads.create_index([("recipient", ASCENDING)])

    async def subscribe(self, subscription: Subscription) -> None:
        """Registers or replaces a recipient's subscription: few, written by administrators,
        so replaced in place."""
        await self._subscriptions.replace_one(
            {"_id": subscription.recipient},
            {
                "_id": subscription.recipient,
                "channels": sorted(channel.value for channel in subscription.channels),
                "webhook_url": subscription.webhook_url,
                "sealed_secret": subscription.sealed_secret,
            },
            upsert=True,
        )

    async def subscription(self, recipient: str) -> Subscription | None:
        document = await self._subscriptions.find_one({"_id": recipient})
        if document is None:
            return None
        return Subscription(
            recipient=recipient,
            channels=frozenset(Channel(c) for c in document["channels"]),
            webhook_url=document["webhook_url"],
            sealed_secret=document["sealed_secret"],
        )

    async def unsubscribe(self, recipient: str) -> bool:
        return (await self._subscriptions.delete_one({"_id": recipient})).deleted_count == 1

    async def remember_contact(self, ticket_id: str, contact: EnterpriseContact) -> None:
        await insert_once(
            self._contacts,
            {
                "_id": ticket_id,
                "enterprise_id": contact.enterprise_id,
                "language": contact.language.value,
                "email": contact.email,
                "phone": contact.phone,
            },
        )

    async def contact(self, ticket_id: str) -> EnterpriseContact | None:
        document = await self._contacts.find_one({"_id": ticket_id})
        if document is None:
            return None
        return EnterpriseContact(
            document["enterprise_id"],
            Language(document["language"]),
            document.get("email"),
            document.get("phone"),
        )

    async def record(
        self, event: Event, message: Message, owner: str, now: datetime
    ) -> Notification | None:
        """Stores the notification; None if it exists already (a redelivery)."""
        stored = await self.record_all(event, [message], owner, now)
        return stored[0] if stored else None

    async def record_all(
        self, event: Event, messages: list[Message], owner: str, now: datetime
    ) -> list[Notification]:
        """Stores what an event says, in one write; returns the notifications that are new
        (a redelivery finds the others stored)."""
        notifications = [
            Notification(
                id=message.notification_id(event),
                ticket_id=event.ticket_id,
                correlation_id=event.correlation_id,
                recipient=message.recipient,
                channel=message.channel,
                language=message.language,
                subject=message.subject,
                body=message.body,
                trigger_event_id=str(event.event_id),
                trigger_type=event.type,
                owner=owner,
                created_at=now,
            )
            for message in messages
        ]
        present = await insert_all_once(
            self._notifications, [_document(notification) for notification in notifications]
        )
        return [n for index, n in enumerate(notifications) if index not in present]

    async def mark_delivered(
        self, notification: Notification, attempts: int, now: datetime
    ) -> None:
        await self._end(notification, DELIVERED, attempts, None, now)

    async def mark_failed(
        self, notification: Notification, attempts: int, error: str, now: datetime
    ) -> None:
        await self._end(notification, FAILED, attempts, error, now)

    async def _end(
        self,
        notification: Notification,
        status: str,
        attempts: int,
        error: str | None,
        at: datetime,
    ) -> None:
        """Logs how the delivery ended; the first word stands (another instance may have
        finished the same delivery during a rebalance)."""
        await insert_once(
            self._outcomes,
            {
                "_id": notification.id,
                "owner": notification.owner,
                "status": status,
                "attempts": attempts,
                "last_error": error,
                "at": at,
            },
        )

    async def has_ended(self, notification_id: str) -> bool:
        return await self._outcomes.find_one({"_id": notification_id}, {"_id": 1}) is not None

    async def note_attempt(
        self, notification_id: str, attempt: int, error: str, now: datetime
    ) -> None:
        await insert_once(
            self._attempts,
            {
                "_id": f"{notification_id}#{attempt}",
                "notification_id": notification_id,
                "attempt": attempt,
                "error": error,
                "at": now,
            },
        )

    async def delivery_log(self, notification_id: str) -> dict[str, Any]:
        """How a notification's delivery went: every failed attempt, and how it ended."""
        attempts = self._attempts.find({"notification_id": notification_id}).sort("attempt")
        return {
            "attempts": [
                {"attempt": a["attempt"], "error": a["error"], "at": a["at"]}
                async for a in attempts
            ],
            "outcome": await self._outcomes.find_one({"_id": notification_id}, {"owner": 0}),
        }

    async def pending(self, owners: Iterable[str]) -> list[Notification]:
        """What these partitions' notifications still await: stored, not ended."""
        found = []
        for owner in owners:
            ended = {d["_id"] async for d in self._outcomes.find({"owner": owner}, {"_id": 1})}
            async for document in self._notifications.find({"owner": owner}):
                if document["_id"] not in ended:
                    found.append(_notification(document))
        return found

    async def inbox(self, recipient: str, limit: int) -> list[Notification]:
        cursor = (
            self._notifications.find({"recipient": recipient, "channel": Channel.INBOX.value})
            .sort("created_at", DESCENDING)
            .limit(limit)
        )
        read = await self._read_by(recipient)
        return [
            replace(_notification(document), read=document["_id"] in read)
            async for document in cursor
        ]

    async def unread_count(self, recipient: str) -> int:
        stored = await self._notifications.count_documents(
            {"recipient": recipient, "channel": Channel.INBOX.value}
        )
        return stored - len(await self._read_by(recipient))

    async def mark_read(self, recipient: str, notification_id: str) -> bool:
        """Marks one of the recipient's inbox items read; False if the recipient has no such
        item. Marking it again changes nothing."""
        found = await self._notifications.find_one(
            {"_id": notification_id, "recipient": recipient, "channel": Channel.INBOX.value},
            {"_id": 1},
        )
        if found is None:
            return False
        await insert_once(self._reads, {"_id": notification_id, "recipient": recipient})
        return True

    async def _read_by(self, recipient: str) -> set[str]:
        return {d["_id"] async for d in self._reads.find({"recipient": recipient}, {"_id": 1})}


def _document(notification: Notification) -> Document:
    return {
        "_id": notification.id,
        "ticket_id": notification.ticket_id,
        "correlation_id": notification.correlation_id,
        "recipient": notification.recipient,
        "channel": notification.channel.value,
        "language": notification.language.value,
        "subject": notification.subject,
        "body": notification.body,
        "trigger_event_id": notification.trigger_event_id,
        "trigger_type": notification.trigger_type,
        "owner": notification.owner,
        "created_at": notification.created_at,
    }


def _notification(document: dict[str, Any]) -> Notification:
    return Notification(
        id=document["_id"],
        ticket_id=document["ticket_id"],
        correlation_id=document["correlation_id"],
        recipient=document["recipient"],
        channel=Channel(document["channel"]),
        language=Language(document["language"]),
        subject=document["subject"],
        body=document["body"],
        trigger_event_id=document["trigger_event_id"],
        trigger_type=document["trigger_type"],
        owner=document["owner"],
        created_at=document["created_at"],
    )
