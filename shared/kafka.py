"""Kafka plumbing every service uses: a durable producer, and a consumer that gives each
handler at-least-once delivery, retries and a dead-letter topic.

Why not FastStream's defaults: its Kafka acknowledgement commits before the handler runs
(at-most-once), a nack re-seeks at once with no backoff, and there is no dead-letter topic.
Here an offset is committed only after the handler of its record returned, that is after its
effect is stored; a store or broker outage is retried with backoff without skipping the record;
a record that can never be processed goes to the dead-letter topic with the reason, and the
partition moves on. Handled offsets are committed together every COMMIT_INTERVAL_SECONDS and
before a partition is given up, not one record at a time.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.trace import SpanKind
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from shared.events import Event, NotReadableYet, UndecodableEvent, decode_event
from shared.logs import CORRELATION_ID
from shared.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    EVENTS_CONSUMED,
    EVENTS_PUBLISHED,
    HANDLER_LATENCY,
    HANDLER_RETRIES,
)
from shared.settings import CommonSettings
from shared.tracing import carrier, context_from, tracer

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    KafkaError,
    ConnectionError,
    TimeoutError,
)
"""Failures of the store or broker that pass: retried until they do, never dead-lettered."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failure passes by itself: an unreachable store or broker, a write the server
    labels retryable, or a store busy with other writers (FerretDB over SQLite answers
    "database is locked" while another write holds the file)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, PyMongoError):
        if exc.has_error_label("RetryableWriteError") or exc.has_error_label(
            "TransientTransactionError"
        ):
            return True
        return isinstance(exc, OperationFailure) and (
            "database is locked" in str(exc) or "SQLITE_BUSY" in str(exc)
        )
    return False


HANDLER_ATTEMPTS = 3
"""Attempts for an unexpected handler error before the record is dead-lettered."""


MAX_BATCH_BYTES = 512 * 1024


def make_broker(settings: CommonSettings, service: str) -> KafkaBroker:
    # acks=all with idempotence: an event is confirmed only once every in-sync replica has it,
    # and a producer retry cannot write it twice or out of order.
    return KafkaBroker(
        # A list: FastStream passes a comma-separated string on as one host name.
        [server.strip() for server in settings.kafka_bootstrap_servers.split(",")],
        client_id=f"parkdesk-{service}",
        acks="all",
        enable_idempotence=True,
        # An idempotent producer has one request in flight per partition: bigger batches carry
        # a burst (ten thousand SLA events due in one second) in a few round trips, not hundreds.
        max_batch_size=MAX_BATCH_BYTES,
        logger=logging.getLogger(f"parkdesk.{service}.kafka"),
        # Per-record "Received"/"Processed" lines at DEBUG, not INFO.
        log_level=logging.DEBUG,
    )


def event_headers(event: Event) -> dict[str, str]:
    return {
        "event-id": str(event.event_id),
        "event-type": event.type,
        "schema-version": str(event.schema_version),
        "correlation-id": event.correlation_id,
    }


async def publish(broker: KafkaBroker, topic: str, event: Event) -> None:
    """Publish and wait until the broker has it: callers store or acknowledge only after this."""
    await publish_all(broker, topic, [event])


async def publish_all(
    broker: KafkaBroker,
    topic: str,
    events: Iterable[Event],
    traces: Sequence[Mapping[str, str]] | None = None,
) -> None:
    """Publish a burst and wait until the broker has all of it. Sent one after another on one
    producer, so each partition keeps their order; the confirmations are awaited together, so
    the burst costs a few round trips, not one per event.

    Each event carries the current trace context, or its own from `traces` (an event stored
    under one request and published later)."""
    confirmations = []
    published: dict[str, int] = {}
    current = carrier()
    for index, event in enumerate(events):
        trace_headers = traces[index] if traces is not None else current
        confirmations.append(
            await broker.publish(
                event.to_json(),
                topic,
                key=event.ticket_id.encode(),
                headers={**event_headers(event), **trace_headers},
                correlation_id=event.correlation_id,
                no_confirm=True,
            )
        )
        published[event.type] = published.get(event.type, 0) + 1
    await asyncio.gather(*confirmations)
    for event_type, count in published.items():
        EVENTS_PUBLISHED.labels(topic, event_type).inc(count)


class NotYet(Exception):
    """A handler's event depends on one its consumer has still to read from another partition
    (an SLA event overtaking the ticket's submission): the record is put back, uncommitted, and
    handled again after the consumer has read on."""


DEFER_SECONDS = 0.2

UPGRADE_WARNING_SECONDS = 60.0
"""A partition waiting for an upgrade says so once a minute, not five times a second."""

COMMIT_INTERVAL_SECONDS = 0.1
"""How often the offsets of handled records are committed. A commit after every record cost
each consumer a round trip per record, 5.8 ms on the local Kafka 4.1 (its group coordinator
waits 5 ms for more offsets before it writes them), and the partitions behind it waited. A
record handled but not committed when its consumer dies is handled again, as after any crash:
every handler allows that."""


class HandledOffsets:
    """The next offset to commit of each partition some of whose records were handled, and the
    consumer that handled them, until they are committed."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, tuple[AIOKafkaConsumer, int]] = {}

    def handled(self, consumer: AIOKafkaConsumer, record: ConsumerRecord[bytes, bytes]) -> None:
        self._pending[TopicPartition(record.topic, record.partition)] = (
            consumer,
            record.offset + 1,
        )

    async def commit(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commits what was handled (of these partitions only, if given), one request for each
        consumer. Offsets of partitions a consumer no longer has are dropped: their next owner
        starts from the last commit and handles those records again."""
        taken = {
            tp: entry
            for tp, entry in self._pending.items()
            if partitions is None or tp in partitions
        }
        for tp in taken:
            del self._pending[tp]
        by_consumer: dict[AIOKafkaConsumer, dict[TopicPartition, int]] = {}
        for tp, (consumer, offset) in taken.items():
            by_consumer.setdefault(consumer, {})[tp] = offset
        for consumer, offsets in by_consumer.items():
            owned = {tp: offset for tp, offset in offsets.items() if tp in consumer.assignment()}
            if not owned:
                continue
            try:
                await consumer.commit(owned)
            except (CommitFailedError, IllegalStateError) as exc:
                log.info("offsets of partitions given up meanwhile not committed: %r", exc)
            except KafkaError as exc:
                # The coordinator moving, the broker away: tried again next time, unless newer
                # records of the partition were handled meanwhile.
                log.warning("committing offsets failed, retrying: %r", exc)
                for tp, offset in owned.items():
                    self._pending.setdefault(tp, (consumer, offset))


@dataclass(frozen=True, slots=True)
class Source:
    """Where a consumed event came from; sla keys its clocks by partition."""

    topic: str
    partition: int
    offset: int


Handler = Callable[[Any, Source], Awaitable[None]]


class EventConsumer:
    """One consumer group member over some topics, dispatching events to handlers by type.

    Event types without a handler are acknowledged and skipped: every service sees the whole
    ticket stream and cares about part of it.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        settings: CommonSettings,
        service: str,
        topics: list[str],
        listener: ConsumerRebalanceListener | None = None,
        workers: int = 1,
    ) -> None:
        self._broker = broker
        self._dead_letters = settings.topics.dead_letters
        self._service = service
        self._handlers: dict[type[Event], Handler] = {}
        self._handled = HandledOffsets()
        self._membership = _GroupMembership(listener, self._handled)
        self._commit_each_record = False
        self._upgrade_warned: dict[tuple[str, int], float] = {}

        # One consumer reads all the topics, one record at a time, unless `workers` asks for
        # more: then each topic has its own subscriber of that many consumers (FastStream runs
        # several consumers of a subscriber for a single topic only), each with its own
        # partitions and committing only them. Records stay in order within a partition, but
        # events of one ticket on two topics may then be handled at the same moment: only
        # for services whose handlers of one topic share no state with those of the other.
        def subscribe(*of: str, workers: int) -> Any:
            return broker.subscriber(
                *of,
                group_id=f"{settings.namespace}-{service}",
                # Offsets are committed by `commit_handled`, never by FastStream.
                ack_policy=AckPolicy.MANUAL,
                auto_offset_reset="earliest",
                listener=self._membership,
                max_workers=workers,
            )

        self._subscribers = (
            [subscribe(*topics, workers=1)]
            if workers == 1
            else [subscribe(topic, workers=workers) for topic in topics]
        )

        async def on_record(message: KafkaMessage) -> None:
            try:
                await self.process(message.raw_message)
            except NotYet:
                # Back to this offset; the consumer reads its other partitions meanwhile.
                await asyncio.sleep(DEFER_SECONDS)
                await message.nack()
                return
            except Exception:
                # Back to this offset as well: a later record of the partition handled and
                # committed would commit this one unhandled.
                await message.nack()
                raise
            self._handled.handled(message.consumer, message.raw_message)
            if self._commit_each_record:
                await self._handled.commit()

        for subscriber in self._subscribers:
            subscriber(on_record)

    @property
    def joined(self) -> bool:
        """Whether this member has joined its group and received its partitions (perhaps none,
        when the group has more members than partitions)."""
        return self._membership.joined

    async def report_lag(self, every_seconds: float = 10.0) -> None:
        """Keeps the lag gauge of each assigned partition current: the partition's end as last
        fetched, minus this consumer's position."""
        reported: set[TopicPartition] = set()
        while True:
            lags = {tp: lag for consumer in self._consumers() for tp, lag in await _lags(consumer)}
            for gone in reported - lags.keys():
                CONSUMER_LAG.remove(gone.topic, str(gone.partition))
            for tp, lag in lags.items():
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
            reported = set(lags)
            await asyncio.sleep(every_seconds)

    async def commit_handled(self, every_seconds: float = COMMIT_INTERVAL_SECONDS) -> None:
        """Commits the handled records' offsets every so often. When cancelled, as the service
        stops, it commits them once more, and every record handled after that is committed on
        its own, until the consumers stop."""
        try:
            while True:
                await asyncio.sleep(every_seconds)
                try:
                    await self._handled.commit()
                except Exception:
                    # Never the end of committing: a later offset of the partition covers it.
                    log.exception("committing handled offsets failed")
        finally:
            self._commit_each_record = True
            await self._handled.commit()

    def _consumers(self) -> list[AIOKafkaConsumer]:
        consumers: list[AIOKafkaConsumer] = []
        for subscriber in self._subscribers:
            # With several workers, FastStream keeps one consumer per worker in
            # `consumer_subgroup`, and none in `consumer`.
            several: list[AIOKafkaConsumer] = getattr(subscriber, "consumer_subgroup", [])
            one: AIOKafkaConsumer | None = subscriber.consumer
            consumers += several or ([one] if one is not None else [])
        return consumers

    def on(self, model: type[E], handler: Callable[[E, Source], Awaitable[None]]) -> None:
        self._handlers[model] = handler

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        source = Source(record.topic, record.partition, record.offset)
        try:
            event = decode_event(record.value or b"")
        except NotReadableYet as newer:
            # An upgrade under way: the record waits, uncommitted, for a consumer that knows it.
            EVENTS_CONSUMED.labels(record.topic, "newer_version", "deferred").inc()
            place, now = (record.topic, record.partition), time.monotonic()
            if now - self._upgrade_warned.get(place, -UPGRADE_WARNING_SECONDS) >= (
                UPGRADE_WARNING_SECONDS
            ):
                self._upgrade_warned[place] = now
                log.warning(
                    "%s[%d]@%d waits for an upgrade: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    newer,
                )
            raise NotYet(str(newer)) from None
        except Exception as exc:
            # UndecodableEvent says why; anything else is a decoding bug, and still no reason
            # to block the partition behind this record.
            reason = str(exc) if isinstance(exc, UndecodableEvent) else f"undecodable: {exc!r}"
            await self.dead_letter(record, reason)
            EVENTS_CONSUMED.labels(record.topic, "undecodable", "dead_lettered").inc()
            return
        handler = self._handlers.get(type(event))
        if handler is None:
            EVENTS_CONSUMED.labels(record.topic, event.type, "ignored").inc()
            return
        started = time.perf_counter()
        # The handler's logs carry the id of the request that caused the event, and its span
        # continues the trace that published it.
        token = CORRELATION_ID.set(event.correlation_id)
        headers = {name: value.decode("latin-1") for name, value in record.headers or ()}
        try:
            with tracer.start_as_current_span(
                f"{event.type} process",
                context=context_from(headers),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": record.topic,
                    "messaging.kafka.destination.partition": record.partition,
                    "messaging.kafka.message.offset": record.offset,
                    "parkdesk.ticket_id": event.ticket_id,
                },
            ):
                outcome = await self._run(handler, event, record, source)
        finally:
            CORRELATION_ID.reset(token)
        HANDLER_LATENCY.labels(event.type).observe(time.perf_counter() - started)
        EVENTS_CONSUMED.labels(record.topic, event.type, outcome).inc()

    async def _run(
        self, handler: Handler, event: Event, record: ConsumerRecord[bytes, bytes], source: Source
    ) -> str:
        """Runs the handler until it succeeds or is given up on; says which."""
        transient_failures = handler_failures = 0
        while True:
            try:
                await handler(event, source)
                return "handled"
            except NotYet:
                EVENTS_CONSUMED.labels(record.topic, event.type, "deferred").inc()
                raise
            except Exception as exc:
                if is_transient(exc):
                    HANDLER_RETRIES.labels(event.type, "transient").inc()
                    # Never skipped: the record waits, and the partition with it, until the
                    # store or broker is back.
                    transient_failures += 1
                    delay = backoff_seconds(transient_failures)
                    log.warning(
                        "transient failure on %s %s (attempt %d), retrying in %.1fs: %r",
                        event.type,
                        event.event_id,
                        transient_failures,
                        delay,
                        exc,
                    )
                    await asyncio.sleep(delay)
                    continue
                handler_failures += 1
                log.exception("handler failed on %s %s", event.type, event.event_id)
                if handler_failures >= HANDLER_ATTEMPTS:
                    await self.dead_letter(record, f"handler failed: {type(exc).__name__}: {exc}")
                    return "dead_lettered"
                HANDLER_RETRIES.labels(event.type, "error").inc()
                await asyncio.sleep(backoff_seconds(handler_failures))

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        log.error(
            "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
        )
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        headers.update(
            {
                "dlt-reason": reason[:2000],
                "dlt-service": self._service,
                "dlt-source-topic": record.topic,
                "dlt-source-partition": str(record.partition),
                "dlt-source-offset": str(record.offset),
            }
        )
        await self._broker.publish(
            record.value or b"", self._dead_letters, key=record.key, headers=headers
        )
        DEAD_LETTERS.labels(record.topic).inc()


async def _lags(consumer: AIOKafkaConsumer) -> list[tuple[TopicPartition, int]]:
    """Each assigned partition's end as last fetched, minus the consumer's position."""
    lags = []
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None:
            continue
        with contextlib.suppress(KafkaError, AssertionError):
            lags.append((tp, max(0, end - await consumer.position(tp))))
    return lags


class _GroupMembership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes that the group was joined, commits what was handled of the partitions given up,
    and passes each rebalance on to the service's own listener, if it has one."""

    def __init__(self, inner: ConsumerRebalanceListener | None, handled: HandledOffsets) -> None:
        self._inner = inner
        self._handled = handled
        self.joined = False

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.joined = False
        # Their next owner starts where this commit leaves them.
        await self._handled.commit(revoked)
        if self._inner is not None:
            await self._inner.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._inner is not None:
            await self._inner.on_partitions_assigned(assigned)
        self.joined = True


def backoff_seconds(attempt: int, base: float = 0.2, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter, so that many consumers do not retry in step."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311
