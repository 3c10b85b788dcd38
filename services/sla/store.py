"""sla's own database: `clocks`, one document per ticket under its id.

Every clock records its Kafka partition, so that the instance that owns a partition finds its
clocks by equality (`partition`, `pending`), the milestones already fired, so that a restart
or a rebalance fires none twice, and the ticket events already applied. Only the partition's
owner writes a clock, and always the whole clock as it holds it.
"""

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.sla.calendar import Calendar
from services.sla.domain import Clock
from shared.events import Category, Priority
from shared.mongo import Document, insert_once


class SlaStore:
    def __init__(
        self, database: AsyncDatabase[Document], calendar: Callable[[str], Calendar]
    ) -> None:
        self._clocks = database["clocks"]
        self._calendar = calendar
        """Resolves a stored calendar name against the policy in force."""

    async def ensure_indexes(self) -> None:
        await self._clocks.create_index([("partition", ASCENDING), ("pending", ASCENDING)])
        await self._clocks.create_index([("next_due_at", ASCENDING)])

    async def start_once(self, clock: Clock) -> Clock:
        """Stores a new clock; a clock stored before for the ticket stays, and is returned."""
        if await insert_once(self._clocks, document_of(clock)):
            return clock
        existing = await self.clock(clock.ticket_id)
        return existing or clock

    async def save(self, clock: Clock) -> None:
        await self._clocks.replace_one({"_id": clock.ticket_id}, document_of(clock))

    async def clock(self, ticket_id: str) -> Clock | None:
        document = await self._clocks.find_one({"_id": ticket_id})
        return clock_of(document, self._calendar) if document else None

    async def pending_clocks(self, partitions: Iterable[int]) -> list[Clock]:
        """The clocks a new owner of these partitions must hold, in one read of the store."""
        owned = sorted(set(partitions))
        if not owned:
            return []
        cursor = self._clocks.find({"partition": {"$in": owned}, "pending": True})
        return [clock_of(document, self._calendar) async for document in cursor]

    async def started_between(self, start: datetime, end: datetime) -> list[Clock]:
        """Clocks started in [start, end): a range scan, for reports, not for the hot path."""
        cursor = self._clocks.find({"started_at": {"$gte": start, "$lt": end}})
        return [clock_of(document, self._calendar) async for document in cursor]


def document_of(clock: Clock) -> Document:
    upcoming = clock.next_milestone()
    return {
        "_id": clock.ticket_id,
        "correlation_id": clock.correlation_id,
        "department": clock.department,
        "partition": clock.partition,
        "generation": clock.generation,
        "started_at": clock.started_at,
        "resolution_target_seconds": clock.resolution_target.total_seconds(),
        "first_response_target_seconds": clock.first_response_target.total_seconds(),
        "thresholds": list(clock.thresholds),
        "calendar": clock.calendar.name,
        "category": clock.category.value,
        "priority": clock.priority.value,
        "paused_seconds": clock.paused_for.total_seconds(),
        "paused_at": clock.paused_at,
        "acknowledged_at": clock.acknowledged_at,
        "stopped_at": clock.stopped_at,
        "rating": clock.rating,
        "fired": sorted(clock.fired),
        "applied": sorted(clock.applied),
        # Derived, for queries: which clocks a new owner must hold, and when they fire.
        "resolution_due_at": clock.resolution_due_at,
        "pending": upcoming is not None,
        "next_due_at": upcoming.due_at if upcoming else None,
    }


def clock_of(document: dict[str, Any], calendar: Callable[[str], Calendar]) -> Clock:
    return Clock(
        ticket_id=document["_id"],
        correlation_id=document["correlation_id"],
        department=document["department"],
        partition=document["partition"],
        generation=document["generation"],
        started_at=document["started_at"],
        resolution_target=timedelta(seconds=document["resolution_target_seconds"]),
        first_response_target=timedelta(seconds=document["first_response_target_seconds"]),
        thresholds=tuple(document["thresholds"]),
        calendar=calendar(document["calendar"]),
        category=Category(document["category"]),
        priority=Priority(document["priority"]),
        paused_for=timedelta(seconds=document["paused_seconds"]),
        paused_at=document["paused_at"],
        acknowledged_at=document["acknowledged_at"],
        stopped_at=document["stopped_at"],
        rating=document["rating"],
        fired=frozenset(document["fired"]),
        applied=frozenset(document["applied"]),
    )
