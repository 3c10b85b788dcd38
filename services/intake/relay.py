"""Moving intake's stored events onto Kafka: at once from the process that stored them, and by a
sweep for whatever a dead process left behind.

A request stores its event in the outbox, hands it to its process's relay and answers; the
relay publishes it (acks=all) within milliseconds and then inserts a `relayed` mark. A process
that dies in between leaves an outbox event without a mark: the sweep publishes every event
older than a grace period that has none. An event published twice (the process died after the
broker confirmed but before the mark) keeps its event id, and consumers drop the repeat.

Order per ticket: a ticket's events are published in sequence order by one relay. When an
action is taken on a ticket whose earlier event is still unmarked (its process died), the earlier
event is published again first, so a consumer never sees a ticket's events out of order.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from faststream.kafka import KafkaBroker

from services.intake.store import IntakeStore, Traced
from shared.events import Event
from shared.kafka import publish_all
from shared.tracing import carrier

log = logging.getLogger("parkdesk.intake.relay")

RETRY_SECONDS = 1.0


class OutboxRelay:
    def __init__(
        self, store: IntakeStore, broker: KafkaBroker, topic: str, batch_size: int
    ) -> None:
        self._store = store
        self._broker = broker
        self._topic = topic
        self._batch_size = batch_size
        self._queue: deque[Traced] = deque()
        self._queued: set[str] = set()
        self._wakeup = asyncio.Event()

    def submit(self, event: Event) -> None:
        """Queues an event the current request stored, under the request's trace."""
        self.queue([Traced(event, carrier())])

    async def submit_after(self, event: Event, earlier: Sequence[Event]) -> None:
        """Queues the event behind whichever earlier events of its ticket never reached Kafka."""
        waiting = [e for e in earlier if str(e.event_id) not in self._queued]
        relayed = await self._store.relayed_among([str(e.event_id) for e in waiting])
        trace = carrier()
        self.queue(Traced(e, trace) for e in [*waiting, event] if str(e.event_id) not in relayed)

    async def submit_unless_relayed(self, event: Event) -> None:
        """For a repeated request: its first attempt's process may have died before publishing."""
        if not await self._store.relayed_among([str(event.event_id)]):
            self.submit(event)

    def queue(self, outgoing: Iterable[Traced]) -> None:
        for traced in outgoing:
            event_id = str(traced.event.event_id)
            if event_id not in self._queued:
                self._queued.add(event_id)
                self._queue.append(traced)
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = [self._queue[i] for i in range(min(self._batch_size, len(self._queue)))]
                try:
                    events = [traced.event for traced in batch]
                    traces = [traced.trace for traced in batch]
                    await publish_all(self._broker, self._topic, events, traces)
                    await self._store.mark_relayed(events)
                except Exception:
                    # Kept at the head of the queue: the ticket's later events must wait for it.
                    log.exception("relaying %d events failed; retrying", len(batch))
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                for traced in batch:
                    self._queue.popleft()
                    self._queued.discard(str(traced.event.event_id))


class OutboxSweep:
    """Finds the events a dead process stored but never published, and relays them.

    It looks only at events recorded since its checkpoint, and only at those older than
    `grace`, which leaves the storing process time to publish them itself and covers clock
    differences between intake instances. Every instance sweeps; they only repeat each other.
    """

    def __init__(
        self, store: IntakeStore, relay: OutboxRelay, interval: timedelta, grace: timedelta
    ) -> None:
        self._store = store
        self._relay = relay
        self._interval = interval
        self._grace = grace

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox sweep failed; retrying")
            await asyncio.sleep(self._interval.total_seconds())

    async def sweep_once(self, now: datetime) -> int:
        """Relays what the outbox holds unpublished; returns how many events that was."""
        since = await self._store.sweep_checkpoint() or datetime.min.replace(tzinfo=UTC)
        before = now - self._grace
        if before <= since:
            return 0
        missing = await self._store.unrelayed(since, before)
        if missing:
            log.warning("relaying %d events a stopped instance left unpublished", len(missing))
            self._relay.queue(missing)
            # Not past them until their marks are in: the next sweep looks again. An event
            # happened no later than it was recorded, so this never skips one.
            before = min(traced.event.occurred_at for traced in missing)
        await self._store.save_sweep_checkpoint(before)
        return len(missing)
