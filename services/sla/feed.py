"""The live feed behind the SLA board: every SLA event as it lands on `parkdesk.sla`.

Each sla instance publishes only the events of its own partitions, so the feed reads the whole
topic (no consumer group, from its end) and fans each event out to the board's open streams.
A stream that cannot keep up is closed rather than allowed to hold memory: its page reconnects.
"""

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import Event, UndecodableEvent, decode_event
from shared.topics import TopicSpec

log = logging.getLogger("parkdesk.sla.feed")

RECENT = 50
"""How many past events a newly opened board is shown at once."""
STREAM_BUFFER = 1_000


class SlaFeed:
    def __init__(self, bootstrap_servers: str, topic: TopicSpec) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self.recent: deque[Event] = deque(maxlen=RECENT)
        self._streams: set[asyncio.Queue[Event | None]] = set()
        self._following = False

    async def following(self) -> bool:
        """A readiness check: the feed has its place at the end of every partition."""
        return self._following

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        try:
            topic = self._topic
            partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for partition in partitions:
                await consumer.position(partition)  # fixed now: nothing after it is missed
            self._following = True
            async for record in consumer:
                try:
                    event = decode_event(record.value or b"")
                except UndecodableEvent:
                    continue  # sla's consumers dead-letter it; the board only skips it
                self.publish(event)
        finally:
            self._following = False
            await consumer.stop()
            for stream in list(self._streams):
                stream.put_nowait(None)

    def publish(self, event: Event) -> None:
        self.recent.append(event)
        for stream in list(self._streams):
            try:
                stream.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("a board stream fell %d events behind; closing it", STREAM_BUFFER)
                self._streams.discard(stream)
                stream.get_nowait()  # room for the end marker
                stream.put_nowait(None)

    @asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[Event | None]]:
        """A queue of the events from now on; None marks the end of the stream."""
        stream: asyncio.Queue[Event | None] = asyncio.Queue(STREAM_BUFFER)
        self._streams.add(stream)
        try:
            yield stream
        finally:
            self._streams.discard(stream)
