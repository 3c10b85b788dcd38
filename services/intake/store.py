"""intake's own database.

- `outbox`: every event intake emits, written before it is published. A ticket that got a 202
  is in here, so it survives the process dying right after answering. Each event is keyed by its
  ticket and its place among the ticket's own events (`T-…:0001`, `T-…:0002`): two actions
  racing on one ticket cannot both take the next place; the loser is told to retry. Its event id
  is unique as well, so a retried request cannot store its event twice.
- `relayed`: one document per outbox event that reached Kafka, inserted after the broker
  confirmed it. The outbox itself is never updated: a mark is an insert, settled by its unique
  key however many instances relay, where an update is read, change, write back on FerretDB.
- `sweep`: one document, the time before which every outbox event is known to be relayed.
- `idempotency`: one document per (caller, Idempotency-Key), inserted first, so that a retried
  request finds the ticket it already opened.
- `learned`: ticket events other services published (routing decisions, the SLA clock), for
  the ticket's state and history, keyed the same way (`T-…:0001`, …) in the order they came.

A ticket's events are read by key, one place after another until the first empty one, never by
a query on `ticket_id`: FerretDB serves only `_id` equality from an index (in the local build:
deploy/local/ferretdb-sqlite-id-index.patch), and scans the whole collection for anything else
(measured: 0.5 s per query at 20,000 documents).
- `tickets`: the read model for lists and queues, one document per ticket, written only by the
  consumer of the ticket's partition (so by one writer), from the ticket's events.
- `audit`: who did what, when, from which address; never the personal data in the request.
"""

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.domain import TicketState, at_store_precision
from shared.auth import Principal
from shared.events import Event, decode_event
from shared.mongo import Document, insert_all_once, insert_once

LOOKUP_BATCH = 100
PLACES_AT_ONCE = 2
"""Places looked up together. A new ticket has one own event and up to two learned ones, and
it is read on every event of it: four places a round cost 24 lookups a ticket, two cost 12, and
lookups were most of the store's work (on FerretDB, most of the CPU a ticket costs)."""
SWEEP_CHECKPOINT = "outbox"


class Traced(NamedTuple):
    event: Event
    trace: Mapping[str, str]
    """W3C trace context headers; empty when the request was not traced."""


class Recorded(StrEnum):
    STORED = "stored"
    ALREADY = "already"
    """This very event was stored before: a retry."""
    CONFLICT = "conflict"
    """Another event took the ticket's next sequence number first."""


class IntakeStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._outbox = database["outbox"]
        self._relayed = database["relayed"]
        self._sweep = database["sweep"]
        self._idempotency = database["idempotency"]
        self._learned = database["learned"]
        self._tickets = database["tickets"]
        self._audit = database["audit"]

    async def ensure_indexes(self) -> None:
        await self._outbox.create_index([("recorded_at", ASCENDING)])
        # Sparse: documents from before the keyed layout have no event_id field.
        await self._outbox.create_index([("event_id", ASCENDING)], unique=True, sparse=True)
        await self._learned.create_index([("event_id", ASCENDING)], unique=True, sparse=True)
        await self._tickets.create_index(
            [("department", ASCENDING), ("due_at", ASCENDING), ("_id", ASCENDING)]
        )
        await self._tickets.create_index(
            [("enterprise_id", ASCENDING), ("submitted_at", ASCENDING)]
        )
        await self._audit.create_index([("ticket_id", ASCENDING)])

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

    async def record(
        self,
        event: Event,
        sequence: int,
        recorded_at: datetime,
        trace: Mapping[str, str] | None = None,
    ) -> Recorded:
        """Puts the event in the outbox as the ticket's `sequence`th own event, with the trace
        context of the request that made it, for a sweep that publishes it later."""
        event_id = str(event.event_id)
        stored = await insert_once(
            self._outbox,
            {
                "_id": place(event.ticket_id, sequence),
                "event_id": event_id,
                "ticket_id": event.ticket_id,
                "sequence": sequence,
                "recorded_at": recorded_at,
                "event": event.model_dump(mode="json"),
                "trace": dict(trace or {}),
            },
        )
        if stored:
            return Recorded.STORED
        taken = await self._outbox.find_one({"_id": place(event.ticket_id, sequence)})
        if taken is not None and taken.get("event_id") == event_id:
            return Recorded.ALREADY
        # Stored under another place (a retry after the ticket moved on), or a race lost.
        if await self._outbox.find_one({"event_id": event_id}, {"_id": 1}):
            return Recorded.ALREADY
        return Recorded.CONFLICT

    async def stored_event(self, event_id: str) -> Event | None:
        document = await self._outbox.find_one({"event_id": event_id})
        return _event(document) if document else None

    async def mark_relayed(self, events: Sequence[Event]) -> None:
        await insert_all_once(self._relayed, [{"_id": str(event.event_id)} for event in events])

    async def relayed_among(self, event_ids: Sequence[str]) -> set[str]:
        # One lookup by key each: FerretDB serves only `_id` equality from an index.
        found: set[str] = set()
        for start in range(0, len(event_ids), LOOKUP_BATCH):
            chunk = event_ids[start : start + LOOKUP_BATCH]
            marks = await asyncio.gather(*(self._relayed.find_one({"_id": i}) for i in chunk))
            found |= {mark["_id"] for mark in marks if mark is not None}
        return found

    async def unrelayed(self, since: datetime, before: datetime) -> list[Traced]:
        """The events recorded in [since, before) that never reached Kafka, in recorded order,
        each with the trace context it was stored under."""
        cursor = self._outbox.find({"recorded_at": {"$gte": since, "$lt": before}}).sort(
            [("recorded_at", ASCENDING), ("sequence", ASCENDING)]
        )
        recorded = [document async for document in cursor]
        relayed = await self.relayed_among([document["event_id"] for document in recorded])
        return [
            Traced(_event(d), d.get("trace") or {})
            for d in recorded
            if d["event_id"] not in relayed
        ]

    async def sweep_checkpoint(self) -> datetime | None:
        document = await self._sweep.find_one({"_id": SWEEP_CHECKPOINT})
        return document["relayed_before"] if document else None

    async def save_sweep_checkpoint(self, relayed_before: datetime) -> None:
        # One document, written by each instance's sweep: a replace is as good as an insert.
        await self._sweep.replace_one(
            {"_id": SWEEP_CHECKPOINT}, {"relayed_before": relayed_before}, upsert=True
        )

    async def learn(self, event: Event) -> list[Event]:
        """Keeps another service's event of a ticket, once, in the next free place; returns all
        the ticket's events, this one among them, for the caller to fold."""
        event_id = str(event.event_id)
        own, learned = await self._ticket_documents(event.ticket_id)
        if all(document["event_id"] != event_id for document in learned):
            document = {
                "event_id": event_id,
                "ticket_id": event.ticket_id,
                "event": event.model_dump(mode="json"),
            }
            free = position = len(learned) + 1
            while not await insert_once(
                self._learned, {"_id": place(event.ticket_id, position), **document}
            ):
                # The place was taken meanwhile, or this very event was kept by another
                # consumer of the partition during a rebalance.
                position += 1
                if await self._learned.find_one({"event_id": event_id}, {"_id": 1}):
                    break
            # Another writer came in between: what it kept belongs in the story too.
            learned = (
                [*learned, document]
                if position == free
                else await _in_places(self._learned, event.ticket_id)
            )
        return [_event(document) for document in own + learned]

    async def ticket_events(self, ticket_id: str) -> list[Event]:
        own, learned = await self._ticket_documents(ticket_id)
        return [_event(document) for document in own + learned]

    async def _ticket_documents(self, ticket_id: str) -> tuple[list[Document], list[Document]]:
        """The ticket's own events and those learned from other services, as stored."""
        own, learned = await asyncio.gather(
            _in_places(self._outbox, ticket_id), _in_places(self._learned, ticket_id)
        )
        return own, learned

    async def audit(
        self, event: Event, action: str, principal: Principal, source: str | None, at: datetime
    ) -> None:
        await insert_once(
            self._audit,
            {
                "_id": str(event.event_id),
                "ticket_id": event.ticket_id,
                "action": action,
                "role": principal.role.value,
                "actor": principal.subject,
                "credential_id": principal.credential_id,
                "source": source,
                "at": at,
            },
        )

    async def save_view(self, state: TicketState, now: datetime) -> None:
        """The read model of one ticket; called by the one consumer of its partition. Written
        only when it changed: most events change nothing a list shows, and a read by `_id` is
        cheaper than a write."""
        view = {
            "enterprise_id": state.ticket.enterprise.id,
            "department": state.department,
            "status": state.status.value,
            "subject": state.ticket.subject,
            "category": state.ticket.category.value,
            "submitted_at": at_store_precision(state.ticket.submitted_at),
            "due_at": at_store_precision(state.resolution_due_at),
            "paused": state.paused,
            "at_risk": state.at_risk,
            "breached": state.breached,
        }
        stored = await self._tickets.find_one({"_id": state.ticket.ticket_id})
        if stored is not None and all(stored.get(field) == value for field, value in view.items()):
            return
        await self._tickets.update_one(
            {"_id": state.ticket.ticket_id},
            {"$set": {**view, "updated_at": now}},
            upsert=True,
        )

    async def views(
        self, criteria: Document, after: tuple[datetime, str] | None, sort_field: str, limit: int
    ) -> list[Document]:
        """A page of the read model, in (sort_field, ticket id) order after the cursor."""
        query = dict(criteria)
        if after is not None:
            moment, ticket_id = after
            query["$or"] = [
                {sort_field: {"$gt": moment}},
                {sort_field: moment, "_id": {"$gt": ticket_id}},
            ]
        cursor = (
            self._tickets.find(query)
            .sort([(sort_field, ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [document async for document in cursor]


def place(ticket_id: str, position: int) -> str:
    """The key of a ticket's `position`th event in the outbox or in `learned`."""
    return f"{ticket_id}:{position:04d}"


async def _in_places(collection: AsyncCollection[Document], ticket_id: str) -> list[Document]:
    """A ticket's documents from place 1 up to the first empty place, a few lookups at a time."""
    found: list[Document] = []
    while True:
        start = len(found) + 1
        chunk = await asyncio.gather(
            *(
                collection.find_one({"_id": place(ticket_id, position)})
                for position in range(start, start + PLACES_AT_ONCE)
            )
        )
        for document in chunk:
            if document is None:
                return found
            found.append(document)


def _event(document: dict[str, Any]) -> Event:
    # Stored as the JSON it is published as, so reading back goes through the same decoder.
    return decode_event(json.dumps(document["event"]).encode())
