"""sla's own database: `clocks`, one document per ticket under its id.

Every clock records its Kafka partition, so that the instance that owns a partition finds its
clocks by equality (`partition`, `pending`), and the milestones already fired, so that a restart
or a rebalance fires none twice. Only the partition's owner writes a clock.
"""

from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.sla.domain import Clock, Milestone
from shared.mongo import Document, insert_once


class SlaStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._clocks = database["clocks"]

    async def ensure_indexes(self) -> None:
        await self._clocks.create_index([("partition", ASCENDING), ("pending", ASCENDING)])
        await self._clocks.create_index([("next_due_at", ASCENDING)])

    async def start_once(self, clock: Clock) -> Clock:
        """Stores a new clock; a clock stored before for the ticket stays, and is returned."""
        if await insert_once(self._clocks, _document(clock)):
            return clock
        existing = await self.clock(clock.ticket_id)
        return existing or clock

    async def clock(self, ticket_id: str) -> Clock | None:
        document = await self._clocks.find_one({"_id": ticket_id})
        return _clock(document) if document else None

    async def mark_fired(self, clock: Clock) -> None:
        """Saves the clock's fired milestones (the caller holds the newer state)."""
        upcoming = clock.next_milestone()
        await self._clocks.update_one(
            {"_id": clock.ticket_id},
            {
                "$set": {
                    "fired": sorted(clock.fired),
                    "pending": upcoming is not None,
                    "next_due_at": upcoming.due_at if upcoming else None,
                }
            },
        )

    async def pending_clocks(self, partitions: Iterable[int]) -> list[Clock]:
        clocks = []
        for partition in partitions:
            cursor = self._clocks.find({"partition": partition, "pending": True})
            clocks.extend([_clock(document) async for document in cursor])
        return clocks


def _document(clock: Clock) -> Document:
    upcoming = clock.next_milestone()
    return {
        "_id": clock.ticket_id,
        "correlation_id": clock.correlation_id,
        "department": clock.department,
        "partition": clock.partition,
        "started_at": clock.started_at,
        "resolution_due_at": clock.resolution_due_at,
        "first_response_due_at": clock.first_response_due_at,
        "milestones": [
            {"name": m.name, "due_at": m.due_at, "threshold": m.threshold} for m in clock.milestones
        ],
        "fired": sorted(clock.fired),
        "pending": upcoming is not None,
        "next_due_at": upcoming.due_at if upcoming else None,
    }


def _clock(document: dict[str, Any]) -> Clock:
    return Clock(
        ticket_id=document["_id"],
        correlation_id=document["correlation_id"],
        department=document["department"],
        partition=document["partition"],
        started_at=document["started_at"],
        resolution_due_at=document["resolution_due_at"],
        first_response_due_at=document["first_response_due_at"],
        milestones=tuple(
            Milestone(m["name"], m["due_at"], m["threshold"]) for m in document["milestones"]
        ),
        fired=frozenset(document["fired"]),
    )
