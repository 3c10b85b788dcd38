"""The clocks this instance owns, in memory, firing their milestones when they come due.

Only the clocks of the Kafka partitions assigned to this instance are held; the store has all of
them, and a new owner rebuilds from it. Range queries on due times stay here, in a heap, because
the store (FerretDB) would scan for them.

Every change to a clock, a milestone firing or a lifecycle event, happens under that ticket's
lock and starts from the clock held here, so two changes cannot overwrite each other.

Milestones that come due together fire together, in batches: one publish round to Kafka and one
write to the store per batch, instead of one of each per clock, so that ten thousand clocks due
in the same second are told within it. What a fire can work out before its due time (opening the
stored clock, the clock's next version once fired, the form the store writes) is worked out a few
seconds ahead, while the scheduler would only wait: at the due time, only the event is made,
published and stored.
"""

import asyncio
import gc
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from services.sla.domain import Clock, Milestone
from shared.kafka import backoff_seconds, is_transient

log = logging.getLogger("parkdesk.sla.timers")


@dataclass(frozen=True, slots=True)
class Due:
    """A milestone of a clock whose time has come (or soon will)."""

    clock: Clock
    milestone: Milestone


D = TypeVar("D", bound=Due)
Stage = Callable[[Clock, Milestone], D]
"""Works out ahead of time what firing this milestone takes."""
Fire = Callable[[list[D]], Awaitable[list[Clock]]]
"""Publishes what each milestone says and stores the clocks; returns them as they are now."""

BATCH = 1000
"""Milestones fired in one publish round and one store write."""
BATCHES_IN_FLIGHT = 4
"""Batches under way at once: Kafka and the store overlap the next batch with this one."""
FIRE_ATTEMPTS = 3
"""Attempts for an unexpected failure of one clock before it is left to a rebuild."""
LOOKAHEAD = timedelta(seconds=5)
"""How far ahead fires are staged: enough for ten thousand due in one second."""
STAGE_CHUNK = 500
"""Fires staged between two looks at the event loop, so that consumers are not held up."""


class Sealed(Protocol):
    """A clock as a rebuild read it, not yet decoded: enough to schedule it."""

    @property
    def ticket_id(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def due_at(self) -> datetime: ...
    def open(self) -> Clock: ...


@dataclass(slots=True)
class _Held(Generic[D]):
    clock: Clock | Sealed
    entry: int
    """The heap entry that stands for this clock now; older entries are stale."""
    staged: D | None = None
    """Its next fire, worked out ahead; a change to the clock makes a new _Held without it."""

    def opened(self) -> Clock:
        if not isinstance(self.clock, Clock):
            self.clock = self.clock.open()
        return self.clock


class ClockScheduler(Generic[D]):
    def __init__(self, stage: Stage[D], fire: Fire[D], now: Callable[[], datetime]) -> None:
        self._stage = stage
        self._fire = fire
        self._now = now
        self._held: dict[str, _Held[D]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._heap: list[tuple[datetime, int, str]] = []
        self._staged: list[tuple[datetime, int, str]] = []
        """Entries due within LOOKAHEAD whose fires are staged, moved here from _heap."""
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._in_flight = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    def __len__(self) -> int:
        return len(self._held)

    def get(self, ticket_id: str) -> Clock | None:
        held = self._held.get(ticket_id)
        return held.opened() if held else None

    @asynccontextmanager
    async def locked(self, ticket_id: str) -> AsyncIterator[None]:
        async with self._lock(ticket_id):
            yield

    def _lock(self, ticket_id: str) -> asyncio.Lock:
        lock = self._locks.get(ticket_id)
        if lock is None:
            lock = self._locks[ticket_id] = asyncio.Lock()
        return lock

    def add(self, clock: Clock) -> None:
        """Takes charge of a clock; one already held stays as it is (it knows more)."""
        if clock.ticket_id not in self._held:
            self.hold(clock)

    def adopt(self, pending: Iterable[Sealed]) -> None:
        """Takes charge of the clocks a rebuild read, as they were stored; each is decoded
        when it first fires or changes.

        They live until they fire, maybe for days, so they are moved out of the garbage
        collector's sight: with a million clocks held, every full collection would otherwise
        walk them all, and stall every fire behind it for a second or more."""
        for sealed in pending:
            if sealed.ticket_id not in self._held:
                self._schedule(sealed.ticket_id, sealed, sealed.due_at)
        gc.collect()
        gc.freeze()

    def hold(self, clock: Clock) -> None:
        """Holds this version of the clock and schedules its next milestone."""
        upcoming = clock.next_milestone()
        if upcoming is None:
            # Nothing left to fire: the store keeps the clock, memory need not.
            self._held.pop(clock.ticket_id, None)
            self._locks.pop(clock.ticket_id, None)
            return
        self._schedule(clock.ticket_id, clock, upcoming.due_at)

    def _schedule(self, ticket_id: str, clock: Clock | Sealed, due_at: datetime) -> None:
        entry = next(self._order)
        self._held[ticket_id] = _Held(clock, entry)
        heapq.heappush(self._heap, (due_at, entry, ticket_id))
        self._changed.set()

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forgets the clocks of partitions handed to another instance; their heap entries are
        skipped when they surface."""
        gone = set(partitions)
        for ticket_id in [t for t, held in self._held.items() if held.clock.partition in gone]:
            del self._held[ticket_id]

    async def run(self) -> None:
        batches: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._changed.clear()
                due = self._pop_due()
                if due:
                    await self._in_flight.acquire()
                    batch = asyncio.create_task(self._fire_batch(due))
                    batches.add(batch)
                    batch.add_done_callback(batches.discard)
                    batch.add_done_callback(lambda _: self._in_flight.release())
                    continue
                if self._stage_soon():
                    await asyncio.sleep(0)
                    continue
                timeout = self._seconds_to_next_task()
                # Not wait_for: on Python 3.11 it can swallow a cancellation that arrives as
                # the event is set, and the scheduler would never stop.
                with suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._changed.wait()
        finally:
            for batch in batches:
                batch.cancel()
            await asyncio.gather(*batches, return_exceptions=True)

    def _seconds_to_next_task(self) -> float | None:
        """Until the next staged fire is due, or the next one to stage comes into view."""
        now = self._now()
        moments = [self._staged[0][0]] if self._staged else []
        if self._heap:
            moments.append(self._heap[0][0] - LOOKAHEAD)
        return max(0.0, (min(moments) - now).total_seconds()) if moments else None

    def _stage_soon(self) -> bool:
        """Stages the fires due within LOOKAHEAD, a chunk at a time; says whether more are
        waiting to be staged."""
        horizon = self._now() + LOOKAHEAD
        for _ in range(STAGE_CHUNK):
            if not self._heap or self._heap[0][0] > horizon:
                return False
            scheduled = heapq.heappop(self._heap)
            held = self._held.get(scheduled[2])
            if held is None or held.entry != scheduled[1]:
                continue
            self._staged_fire(held)
            heapq.heappush(self._staged, scheduled)
        return True

    def _staged_fire(self, held: _Held[D]) -> D | None:
        """The clock's next fire, staged now if it was not yet; None when nothing is left."""
        if held.staged is None:
            clock = held.opened()
            upcoming = clock.next_milestone()
            if upcoming is not None:
                held.staged = self._stage(clock, upcoming)
        return held.staged

    def _pop_due(self) -> list[str]:
        now = self._now()
        due: list[str] = []
        for heap in (self._staged, self._heap):
            while heap and heap[0][0] <= now and len(due) < BATCH:
                _, entry, ticket_id = heapq.heappop(heap)
                held = self._held.get(ticket_id)
                if held is not None and held.entry == entry:
                    due.append(ticket_id)
        return due

    async def _fire_batch(self, ticket_ids: list[str]) -> None:
        locks = [self._lock(ticket_id) for ticket_id in ticket_ids]
        acquired = []
        try:
            for lock in locks:
                await lock.acquire()
                acquired.append(lock)
            due: list[D] = []
            now = self._now()
            for ticket_id in ticket_ids:
                held = self._held.get(ticket_id)
                if held is None:
                    continue
                staged = self._staged_fire(held)
                if staged is None or staged.milestone.due_at > now:
                    # Stopped or moved by a lifecycle event while it waited for the lock, or
                    # adopted with a due time that the policy in force puts later.
                    self.hold(held.opened())
                    continue
                due.append(staged)
            if due:
                await self._fire_with_retries(due)
        finally:
            for lock in acquired:
                lock.release()

    async def _fire_with_retries(self, due: list[D]) -> None:
        transient = failed = 0
        while True:
            try:
                fired = await self._fire(due)
                break
            except Exception as exc:
                if is_transient(exc):
                    transient += 1
                    log.warning(
                        "firing %d milestones failed (attempt %d): %r", len(due), transient, exc
                    )
                    # Short and capped: a busy store clears in milliseconds, and every second
                    # waited is a second late.
                    await asyncio.sleep(backoff_seconds(transient, base=0.02, cap=1.0))
                    continue
                if len(due) > 1:
                    # One bad clock must not hold back the others: each on its own.
                    for one in due:
                        await self._fire_with_retries([one])
                    return
                failed += 1
                clock, milestone = due[0].clock, due[0].milestone
                log.exception("firing %s of %s failed", milestone.name, clock.ticket_id)
                if failed >= FIRE_ATTEMPTS:
                    # Not fired and not marked: the store keeps it pending, and the next
                    # owner of the partition tries again. The other clocks go on.
                    self._held.pop(clock.ticket_id, None)
                    return
                await asyncio.sleep(backoff_seconds(failed))
        for clock in fired:
            if clock.ticket_id in self._held:
                self.hold(clock)
