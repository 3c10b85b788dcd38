"""The clocks this instance owns, in memory, firing each milestone when it comes due.

Only the clocks of the Kafka partitions assigned to this instance are held; the store has all of
them, and a new owner rebuilds from it. Range queries on due times stay here, in a heap, because
the store (FerretDB) would scan for them.

Every change to a clock, a milestone firing or a lifecycle event, happens under that ticket's
lock and starts from the clock held here, so two changes cannot overwrite each other.
"""

import asyncio
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import datetime

from services.sla.domain import Clock, Milestone
from shared.kafka import backoff_seconds, is_transient

log = logging.getLogger("parkdesk.sla.timers")

Fire = Callable[[Clock, Milestone], Awaitable[Clock]]
"""Publishes what the milestone says and stores the clock; returns the clock as it is now."""

MAX_CONCURRENT_FIRES = 64
"""Fires under way at once: enough to fill the producer's batches; more only makes the store's
writers queue (FerretDB over SQLite has one writer at a time)."""
FIRE_ATTEMPTS = 3
"""Attempts for an unexpected failure of one fire before that clock is left to a rebuild."""


class ClockScheduler:
    def __init__(self, fire: Fire, now: Callable[[], datetime]) -> None:
        self._fire = fire
        self._now = now
        self._clocks: dict[str, Clock] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._heap: list[tuple[datetime, int, str, str]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._clocks)

    def get(self, ticket_id: str) -> Clock | None:
        return self._clocks.get(ticket_id)

    @asynccontextmanager
    async def locked(self, ticket_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(ticket_id, asyncio.Lock())
        async with lock:
            yield

    def add(self, clock: Clock) -> None:
        """Takes charge of a clock; one already held stays as it is (it knows more)."""
        if clock.ticket_id not in self._clocks:
            self.hold(clock)

    def hold(self, clock: Clock) -> None:
        """Holds this version of the clock and schedules its next milestone."""
        if clock.next_milestone() is None:
            # Nothing left to fire: the store keeps the clock, memory need not.
            self._clocks.pop(clock.ticket_id, None)
            self._locks.pop(clock.ticket_id, None)
            return
        self._clocks[clock.ticket_id] = clock
        milestone = clock.next_milestone()
        assert milestone is not None
        heapq.heappush(
            self._heap, (milestone.due_at, next(self._order), clock.ticket_id, milestone.name)
        )
        self._changed.set()

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forgets the clocks of partitions handed to another instance; their heap entries are
        skipped when they surface."""
        gone = set(partitions)
        for ticket_id in [t for t, clock in self._clocks.items() if clock.partition in gone]:
            del self._clocks[ticket_id]

    async def run(self) -> None:
        while True:
            self._changed.clear()
            due = self._pop_due()
            if due:
                await asyncio.gather(*(self._fire_one(ticket_id, name) for ticket_id, name in due))
                continue
            timeout = None
            if self._heap:
                timeout = max(0.0, (self._heap[0][0] - self._now()).total_seconds())
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    def _pop_due(self) -> list[tuple[str, str]]:
        now = self._now()
        due: list[tuple[str, str]] = []
        while self._heap and self._heap[0][0] <= now and len(due) < MAX_CONCURRENT_FIRES:
            due_at, _, ticket_id, name = heapq.heappop(self._heap)
            if _current(self._clocks.get(ticket_id), name, due_at) is not None:
                due.append((ticket_id, name))
        return due

    async def _fire_one(self, ticket_id: str, name: str) -> None:
        async with self.locked(ticket_id):
            clock = self._clocks.get(ticket_id)
            milestone = clock.next_milestone() if clock else None
            # A lifecycle event may have moved or cancelled it while it waited for the lock.
            if clock is None or milestone is None or milestone.name != name:
                return
            transient = failed = 0
            while True:
                try:
                    fired = await self._fire(clock, milestone)
                    break
                except Exception as exc:
                    if is_transient(exc):
                        transient += 1
                        log.warning(
                            "firing %s of %s failed (attempt %d): %r",
                            name,
                            ticket_id,
                            transient,
                            exc,
                        )
                        # Short and capped: a busy store clears in milliseconds, and every second
                        # waited is a second late.
                        await asyncio.sleep(backoff_seconds(transient, base=0.02, cap=1.0))
                        continue
                    failed += 1
                    log.exception("firing %s of %s failed", name, ticket_id)
                    if failed >= FIRE_ATTEMPTS:
                        # Not fired and not marked: the store keeps it pending, and the next
                        # owner of the partition tries again. The other clocks go on.
                        self._clocks.pop(ticket_id, None)
                        return
                    await asyncio.sleep(backoff_seconds(failed))
            if ticket_id in self._clocks:
                self.hold(fired)


def _current(clock: Clock | None, name: str, due_at: datetime) -> Milestone | None:
    """The milestone a heap entry stands for, if the clock still has it due at that time."""
    milestone = clock.next_milestone() if clock else None
    if milestone is None or milestone.name != name or milestone.due_at != due_at:
        return None
    return milestone
