"""intake's own database.

- `outbox`: every event intake emits, one document each under its event id, written before it is
  published. A ticket that got a 202 is in here, so it survives the process dying right after
  answering: the relay publishes what is not yet marked relayed.
- `idempotency`: one document per (caller, Idempotency-Key), inserted first, so that a retried
  request finds the ticket it already opened.
- `learned`: ticket events other services published (routing decisions), for the ticket's view.
"""

import json
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from shared.events import Event, decode_event
from shared.mongo import Document, insert_once


class IntakeStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._outbox = database["outbox"]
        self._idempotency = database["idempotency"]
        self._learned = database["learned"]

    async def ensure_indexes(self) -> None:
        await self._outbox.create_index([("relayed", ASCENDING), ("recorded_at", ASCENDING)])
        await self._outbox.create_index([("ticket_id", ASCENDING)])
        await self._learned.create_index([("ticket_id", ASCENDING)])

    async def claim_idempotency_key(
        self, scope: str, fingerprint: str, ticket_id: str, submitted_at: datetime
    ) -> Document:
        """Records the key, or finds it recorded: returns what the first request under it set."""
        document = {
            "_id": scope,
            "fingerprint": fingerprint,
            "ticket_id": ticket_id,
            "submitted_at": submitted_at,
        }
        if await insert_once(self._idempotency, document):
            return document
        earlier = await self._idempotency.find_one({"_id": scope})
        if earlier is None:  # pragma: no cover - keys are never deleted
            raise RuntimeError(f"idempotency key {scope!r} vanished")
        return earlier

    async def record(self, event: Event, recorded_at: datetime) -> bool:
        """Puts the event in the outbox; False if it was there already."""
        return await insert_once(
            self._outbox,
            {
                "_id": str(event.event_id),
                "ticket_id": event.ticket_id,
                "recorded_at": recorded_at,
                "relayed": False,
                "event": event.model_dump(mode="json"),
            },
        )

    async def unrelayed(self, limit: int) -> list[Event]:
        cursor = self._outbox.find({"relayed": False}).sort("recorded_at", ASCENDING).limit(limit)
        return [_event(document) async for document in cursor]

    async def mark_relayed(self, events: list[Event]) -> None:
        if events:
            await self._outbox.bulk_write(
                [UpdateOne({"_id": str(e.event_id)}, {"$set": {"relayed": True}}) for e in events],
                ordered=False,
            )

    async def learn(self, event: Event) -> None:
        await insert_once(
            self._learned,
            {
                "_id": str(event.event_id),
                "ticket_id": event.ticket_id,
                "event": event.model_dump(mode="json"),
            },
        )

    async def ticket_events(self, ticket_id: str) -> list[Event]:
        own = [_event(d) async for d in self._outbox.find({"ticket_id": ticket_id})]
        learned = [_event(d) async for d in self._learned.find({"ticket_id": ticket_id})]
        return own + learned


def _event(document: dict[str, Any]) -> Event:
    # Stored as the JSON it is published as, so reading back goes through the same decoder.
    return decode_event(json.dumps(document["event"]).encode())
