"""The outbox relay: the one writer that moves intake's stored events onto Kafka, in order.

A request wakes it as soon as its event is stored, so a ticket reaches the topic within
milliseconds; a periodic sweep catches whatever a crash left behind. An event published but not
yet marked relayed when the process dies is published again on restart, with the same event id,
and consumers drop the repeat.
"""

import asyncio
import logging
from contextlib import suppress

from faststream.kafka import KafkaBroker

from services.intake.store import IntakeStore
from shared.kafka import publish_all
from shared.topics import Topics

log = logging.getLogger("parkdesk.intake.relay")


class OutboxRelay:
    def __init__(
        self,
        store: IntakeStore,
        broker: KafkaBroker,
        topics: Topics,
        batch_size: int,
        idle_seconds: float,
    ) -> None:
        self._store = store
        self._broker = broker
        self._topics = topics
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                if await self.relay_once() == 0:
                    await self._sleep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay failed; retrying")
                await self._sleep()

    async def relay_once(self) -> int:
        self._wakeup.clear()
        events = await self._store.unrelayed(self._batch_size)
        if not events:
            return 0
        await publish_all(self._broker, self._topics.tickets, events)
        await self._store.mark_relayed(events)
        return len(events)

    async def _sleep(self) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(self._idle_seconds):
                await self._wakeup.wait()
