"""notify's own database.

- `notifications`: one document per (event, recipient, channel) under that key, so that no
  redelivery, restart or second instance can make a second one; it doubles as the delivery log
  (status, attempts, last error, times). Each records the Kafka partition of the event that
  caused it: the instance that owns the partition is the one that delivers it.
- `contacts`: what notify needs to reach a ticket's enterprise, learned from `ticket.submitted`.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.notify.domain import EnterpriseContact, Message
from shared.events import Channel, Event, Language
from shared.mongo import Document, insert_once

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


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
    status: str
    attempts: int
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
            "status": self.status,
            "created_at": self.created_at,
            "read": self.read,
        }


class NotifyStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._notifications = database["notifications"]
        self._contacts = database["contacts"]

    async def ensure_indexes(self) -> None:
        await self._notifications.create_index(
            [("recipient", ASCENDING), ("channel", ASCENDING), ("created_at", DESCENDING)]
        )
        await self._notifications.create_index([("owner", ASCENDING), ("status", ASCENDING)])

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
        notification = Notification(
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
            status=PENDING,
            attempts=0,
            created_at=now,
        )
        if await insert_once(self._notifications, _document(notification)):
            return notification
        return None

    async def mark_delivered(self, notification_id: str, attempts: int, now: datetime) -> None:
        await self._notifications.update_one(
            {"_id": notification_id},
            {"$set": {"status": DELIVERED, "attempts": attempts, "delivered_at": now}},
        )

    async def mark_failed(
        self, notification_id: str, attempts: int, error: str, now: datetime
    ) -> None:
        await self._notifications.update_one(
            {"_id": notification_id},
            {
                "$set": {
                    "status": FAILED,
                    "attempts": attempts,
                    "last_error": error,
                    "failed_at": now,
                }
            },
        )

    async def note_attempt(self, notification_id: str, attempts: int, error: str) -> None:
        await self._notifications.update_one(
            {"_id": notification_id}, {"$set": {"attempts": attempts, "last_error": error}}
        )

    async def pending(self, owners: Iterable[str]) -> list[Notification]:
        found = []
        for owner in owners:
            cursor = self._notifications.find({"owner": owner, "status": PENDING})
            found.extend([_notification(document) async for document in cursor])
        return found

    async def inbox(self, recipient: str, limit: int) -> list[Notification]:
        cursor = (
            self._notifications.find({"recipient": recipient, "channel": Channel.INBOX.value})
            .sort("created_at", DESCENDING)
            .limit(limit)
        )
        return [_notification(document) async for document in cursor]

    async def unread_count(self, recipient: str) -> int:
        return await self._notifications.count_documents(
            {"recipient": recipient, "channel": Channel.INBOX.value, "read": False}
        )

    async def mark_read(self, recipient: str, notification_id: str) -> bool:
        """Marks one of the recipient's inbox items read; False if the recipient has no such
        item. Marking it again changes nothing."""
        found = await self._notifications.find_one(
            {"_id": notification_id, "recipient": recipient, "channel": Channel.INBOX.value},
            {"read": 1},
        )
        if found is None:
            return False
        if not found.get("read"):
            await self._notifications.update_one({"_id": notification_id}, {"$set": {"read": True}})
        return True

    async def by_ticket(self, ticket_id: str) -> list[Notification]:
        cursor = self._notifications.find({"ticket_id": ticket_id})
        return [_notification(document) async for document in cursor]


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
        "status": notification.status,
        "attempts": notification.attempts,
        "created_at": notification.created_at,
        "read": notification.read,
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
        status=document["status"],
        attempts=document["attempts"],
        created_at=document["created_at"],
        read=document["read"],
    )
