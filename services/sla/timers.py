"""The clocks this instance owns, in memory, firing each milestone when it comes due.

Only the clocks of the Kafka partitions assigned to this instance are held; the store has all of
them, and a new owner rebuilds from it. Range queries on due times stay here, in a heap, because
the store (FerretDB) would scan for them.
"""

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from datetime import datetime

from services.sla.domain import Clock, Milestone
from shared.kafka import TRANSIENT_ERRORS, backoff_seconds

log = logging.getLogger("parkdesk.sla.timers")

Fire = Callable[[Clock, Milestone], Awaitable[None]]

MAX_CONCURRENT_FIRES = 256


class ClockScheduler:
    def __init__(self, fire: Fire, now: Callable[[], datetime]) -> None:
        self._fire = fire
        self._now = now
        self._clocks: dict[str, Clock] = {}
        self._heap: list[tuple[datetime, int, str, str]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._clocks)

    def add(self, clock: Clock) -> None:
        """Takes charge of a clock; one already held stays as it is (it knows more)."""
        if clock.ticket_id in self._clocks:
            return
        self._clocks[clock.ticket_id] = clock
        self._schedule(clock)

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
                await self._fire_all(due)
                continue
            timeout = None
            if self._heap:
                timeout = max(0.0, (self._heap[0][0] - self._now()).total_seconds())
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    def _schedule(self, clock: Clock) -> None:
        milestone = clock.next_milestone()
        if milestone is not None:
            heapq.heappush(
                self._heap, (milestone.due_at, next(self._order), clock.ticket_id, milestone.name)
            )
            self._changed.set()

    def _pop_due(self) -> list[tuple[Clock, Milestone]]:
        now = self._now()
        due: list[tuple[Clock, Milestone]] = []
        while self._heap and self._heap[0][0] <= now and len(due) < MAX_CONCURRENT_FIRES:
            _, _, ticket_id, name = heapq.heappop(self._heap)
            clock = self._clocks.get(ticket_id)
            milestone = clock.next_milestone() if clock else None
            if clock is not None and milestone is not None and milestone.name == name:
                due.append((clock, milestone))
        return due

    async def _fire_all(self, due: list[tuple[Clock, Milestone]]) -> None:
        await asyncio.gather(*(self._fire_one(clock, milestone) for clock, milestone in due))

    async def _fire_one(self, clock: Clock, milestone: Milestone) -> None:
        attempt = 0
        while True:
            try:
                await self._fire(clock, milestone)
                break
            except TRANSIENT_ERRORS as exc:
                attempt += 1
                log.warning(
                    "firing %s of %s failed (attempt %d): %r",
                    milestone.name,
                    clock.ticket_id,
                    attempt,
                    exc,
                )
                await asyncio.sleep(backoff_seconds(attempt))
        current = self._clocks.get(clock.ticket_id)
        if current is not None:
            fired = current.with_fired(milestone.name)
            self._clocks[clock.ticket_id] = fired
            self._schedule(fired)
            if fired.next_milestone() is None:
                # Nothing left to fire: the store keeps the clock, memory need not.
                del self._clocks[clock.ticket_id]
