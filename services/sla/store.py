"""sla's own database: every stored version of every clock, one collection per partition.

Written only by inserts. A change to a clock is a new document, `<ticket id>#<version>`, and
the newest version is the clock. This is how the store stays fast and safe on both targets:
- FerretDB (the local store) applies an update as read, change, write back, and v1.24 as
  published scanned the whole collection for one (13 updates/s with 30,000 documents; the local
  build is patched, deploy/local/ferretdb-sqlite-id-index.patch), while inserts stay constant
  (about 50,000/s in batches);
- a version that exists already is a duplicate key, so two writers of one clock (an old and a
  new owner during a rebalance) cannot overwrite each other: the second learns it is stale.

One collection per Kafka partition (`clocks_p<n>`), so that a new owner of some partitions
reads just those collections, whole, as fast as the store reads (FerretDB filters other than
on `_id` cost more than reading everything). The clock's state is one JSON string beside the
few fields the store queries: every top-level field costs the FerretDB reader, measured at
7,000 documents/s with twenty fields against 29,000/s with four.
"""

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic_core import from_json, to_json
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.sla.calendar import Calendar
from services.sla.domain import Clock
from shared.events import Category, Priority
from shared.mongo import Document, insert_all_once

PREFIX = "clocks_p"
READ_BATCH = 10_000


class StaleClock(Exception):
    """Another writer stored this version of the clock first: start again from the store."""


@dataclass(frozen=True, slots=True)
class NextVersion:
    """The next version of a clock and the document that stores it, made before the write (a
    fire stages it seconds ahead of its due time)."""

    clock: Clock
    document: Document


def next_version(clock: Clock) -> NextVersion:
    saved = clock.next_version()
    return NextVersion(saved, document_of(saved))


class SlaStore:
    def __init__(
        self, database: AsyncDatabase[Document], calendar: Callable[[str], Calendar]
    ) -> None:
        self._database = database
        self._calendar = calendar
        """Resolves a stored calendar name against the policy in force."""
        self._indexed: set[int] = set()

    async def ensure_indexes(self) -> None:
        for partition in await self._partitions():
            await self._partition(partition)

    async def start_once(self, clock: Clock) -> Clock:
        """Stores a new clock; a clock stored before for the ticket stays, and is returned."""
        try:
            return await self.save(clock)
        except StaleClock:
            existing = await self.clock(clock.ticket_id)
            return existing or clock

    async def save(self, clock: Clock) -> Clock:
        """Stores the next version of the clock, and returns it as stored."""
        saved = clock.next_version()
        try:
            await (await self._partition(clock.partition)).insert_one(document_of(saved))
        except DuplicateKeyError:
            raise StaleClock(clock.ticket_id) from None
        return saved

    async def save_all(self, clocks: list[Clock]) -> list[Clock]:
        """Stores the next version of each clock in one write per partition; returns them as
        stored, each as the store has it now, where another writer got there first."""
        return await self.save_versions([next_version(clock) for clock in clocks])

    async def save_versions(self, versions: list[NextVersion]) -> list[Clock]:
        by_partition: dict[int, list[Document]] = {}
        for version in versions:
            by_partition.setdefault(version.clock.partition, []).append(version.document)
        written = await asyncio.gather(
            *(self._insert_versions(p, documents) for p, documents in by_partition.items())
        )
        stale = set().union(*written)
        saved = [version.clock for version in versions]
        if not stale:
            return saved
        current = []
        for clock in saved:
            if clock.ticket_id in stale:
                clock = await self.clock(clock.ticket_id) or clock
            current.append(clock)
        return current

    async def _insert_versions(self, partition: int, documents: list[Document]) -> set[str]:
        """Inserts the documents; returns the tickets whose version was there already."""
        present = await insert_all_once(await self._partition(partition), documents)
        return {documents[index]["ticket_id"] for index in present}

    async def clock(self, ticket_id: str) -> Clock | None:
        """The newest version of a ticket's clock, wherever its partition is."""
        collections = [await self._partition(p) for p in await self._partitions()]
        found = await asyncio.gather(
            *(collection.find({"ticket_id": ticket_id}).to_list() for collection in collections)
        )
        newest = max((d for each in found for d in each), key=version_of, default=None)
        return clock_of(newest, self._calendar) if newest else None

    async def pending_clocks(self, partitions: Iterable[int]) -> list["SealedClock"]:
        """The clocks a new owner of these partitions must hold, each still in its stored form
        with the time it is due next: a rebuild reads a million of them, and most are decoded
        only when they fire or change. The partitions are read concurrently."""
        owned = set(partitions) & set(await self._partitions())
        found = await asyncio.gather(*(self._pending_in(partition) for partition in owned))
        return [pending for partition in found for pending in partition]

    async def started_between(self, start: datetime, end: datetime) -> list[Clock]:
        """Clocks started in [start, end): a read of every clock, for reports, not for the hot
        path."""
        clocks = []
        for partition in await self._partitions():
            for document in (await self._newest_in(partition)).values():
                clock = clock_of(document, self._calendar)
                if start <= clock.started_at < end:
                    clocks.append(clock)
        return clocks

    async def _pending_in(self, partition: int) -> list["SealedClock"]:
        return [
            SealedClock(document, partition, self._calendar)
            for document in (await self._newest_in(partition)).values()
            if document["next_due_at"] is not None
        ]

    async def _newest_in(self, partition: int) -> dict[str, Document]:
        """The newest stored version of every clock of the partition; only these are decoded,
        and a partition's documents are let go as soon as it is."""
        collection = self._database[f"{PREFIX}{partition}"]
        newest: dict[str, Document] = {}
        async for document in collection.find({}, batch_size=READ_BATCH):
            held = newest.get(document["ticket_id"])
            if held is None or version_of(held) < version_of(document):
                newest[document["ticket_id"]] = document
        return newest

    async def _partitions(self) -> list[int]:
        names = await self._database.list_collection_names()
        return sorted(int(name[len(PREFIX) :]) for name in names if name.startswith(PREFIX))

    async def _partition(self, partition: int) -> AsyncCollection[Document]:
        collection = self._database[f"{PREFIX}{partition}"]
        if partition not in self._indexed:
            await collection.create_index([("ticket_id", ASCENDING)])
            await collection.create_index([("next_due_at", ASCENDING)])
            self._indexed.add(partition)
        return collection


class SealedClock:
    """A pending clock as stored, opened (decoded) when first needed."""

    __slots__ = ("_calendar", "_state", "due_at", "partition", "ticket_id", "version")

    def __init__(
        self, document: Document, partition: int, calendar: Callable[[str], Calendar]
    ) -> None:
        self.ticket_id: str = document["ticket_id"]
        self.version = version_of(document)
        self.partition = partition
        self.due_at: datetime = document["next_due_at"]
        self._state: str = document["state"]
        self._calendar = calendar

    def open(self) -> Clock:
        return _decode(self.ticket_id, self.version, self._state, self._calendar)


def document_of(clock: Clock) -> Document:
    """The stored form of one version of a clock."""
    upcoming = clock.next_milestone()
    state: dict[str, Any] = {
        "correlation_id": clock.correlation_id,
        "department": clock.department,
        "partition": clock.partition,
        "generation": clock.generation,
        "started_at": clock.started_at.isoformat(),
        "resolution_target": clock.resolution_target.total_seconds(),
        "first_response_target": clock.first_response_target.total_seconds(),
        "thresholds": clock.thresholds,
        "calendar": clock.calendar.name,
        "category": clock.category.value,
        "priority": clock.priority.value,
        "paused_for": clock.paused_for.total_seconds(),
        "paused_at": _iso(clock.paused_at),
        "acknowledged_at": _iso(clock.acknowledged_at),
        "stopped_at": _iso(clock.stopped_at),
        "rating": clock.rating,
        "fired": sorted(clock.fired),
        "applied": sorted(clock.applied),
    }
    return {
        "_id": f"{clock.ticket_id}#{clock.version}",
        "ticket_id": clock.ticket_id,
        # Derived, for operators and a store with range queries: when the clock fires next.
        "next_due_at": upcoming.due_at if upcoming else None,
        # Empty fields left out: the store reads shorter documents faster.
        "state": to_json(
            {key: value for key, value in state.items() if value not in (None, [])}
        ).decode(),
    }


def clock_of(document: Document, calendar: Callable[[str], Calendar]) -> Clock:
    return _decode(document["ticket_id"], version_of(document), document["state"], calendar)


def _decode(
    ticket_id: str, version: int, stored: str, calendar: Callable[[str], Calendar]
) -> Clock:
    state = from_json(stored)
    return Clock(
        ticket_id=ticket_id,
        version=version,
        correlation_id=state["correlation_id"],
        department=state["department"],
        partition=state["partition"],
        generation=state["generation"],
        started_at=datetime.fromisoformat(state["started_at"]),
        resolution_target=timedelta(seconds=state["resolution_target"]),
        first_response_target=timedelta(seconds=state["first_response_target"]),
        thresholds=tuple(state["thresholds"]),
        calendar=calendar(state["calendar"]),
        category=Category(state["category"]),
        priority=Priority(state["priority"]),
        paused_for=timedelta(seconds=state["paused_for"]),
        paused_at=_moment(state.get("paused_at")),
        acknowledged_at=_moment(state.get("acknowledged_at")),
        stopped_at=_moment(state.get("stopped_at")),
        rating=state.get("rating"),
        fired=frozenset(state.get("fired", ())),
        applied=frozenset(state.get("applied", ())),
    )


def version_of(document: Document) -> int:
    return int(document["_id"].rpartition("#")[2])


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
