"""The consumer plumbing's decisions, on FastStream's in-memory broker (the pipeline itself is
proven on real Kafka in tests/integration)."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from pymongo.errors import AutoReconnect, OperationFailure

from shared import kafka
from shared.events import TicketSubmitted
from shared.kafka import EventConsumer, Source
from shared.settings import CommonSettings
from tests.unit.samples import sample_ticket

SETTINGS = CommonSettings(namespace="unit")


def submitted() -> TicketSubmitted:
    ticket = sample_ticket()
    return TicketSubmitted(ticket_id=ticket.ticket_id, correlation_id="c-1", ticket=ticket)


class Harness:
    def __init__(
        self, handler_failures: int = 0, failure: Callable[[str], Exception] = ValueError
    ) -> None:
        self.broker = KafkaBroker()
        self.handled: list[Any] = []
        self.dead: list[tuple[bytes, dict[str, str]]] = []
        self._failures = handler_failures
        self._failure = failure
        consumer = EventConsumer(self.broker, SETTINGS, "unit", [SETTINGS.topics.tickets])
        consumer.on(TicketSubmitted, self.on_ticket_submitted)

        @self.broker.subscriber(SETTINGS.topics.dead_letters)
        async def on_dead_letter(message: KafkaMessage) -> None:
            self.dead.append((message.body, dict(message.headers)))

    async def on_ticket_submitted(self, event: TicketSubmitted, source: Source) -> None:
        if self._failures:
            self._failures -= 1
            raise self._failure("boom")
        self.handled.append((event.event_id, source.topic))


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "backoff_seconds", lambda attempt, **_: 0.0)


async def test_an_event_reaches_its_handler() -> None:
    harness = Harness()
    event = submitted()
    async with TestKafkaBroker(harness.broker) as broker:
        await broker.publish(event.to_json(), SETTINGS.topics.tickets, key=b"k")

    assert harness.handled == [(event.event_id, SETTINGS.topics.tickets)]
    assert harness.dead == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00garbage", "not JSON"),
        (json.dumps({"type": "ticket.exploded", "schema_version": 1}).encode(), "event type"),
        (json.dumps({"type": "ticket.submitted", "schema_version": 1}).encode(), "invalid"),
    ],
)
async def test_a_poison_record_is_dead_lettered_with_its_bytes_and_reason(
    payload: bytes, reason: str
) -> None:
    harness = Harness()
    async with TestKafkaBroker(harness.broker) as broker:
        await broker.publish(payload, SETTINGS.topics.tickets, headers={"origin": "test"})

    [(body, headers)] = harness.dead
    assert body == payload
    assert reason in headers["dlt-reason"]
    assert headers["dlt-source-topic"] == SETTINGS.topics.tickets
    assert headers["origin"] == "test"
    assert harness.handled == []


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_its_attempts() -> None:
    harness = Harness(handler_failures=10)
    async with TestKafkaBroker(harness.broker) as broker:
        await broker.publish(submitted().to_json(), SETTINGS.topics.tickets)

    [(_, headers)] = harness.dead
    assert headers["dlt-reason"] == "handler failed: ValueError: boom"
    assert harness.handled == []


@pytest.fixture
def nacked(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each record put back. On real Kafka the nack seeks back and the record comes again after
    the consumer's other partitions (tests/chaos shows it); the in-memory broker does not
    redeliver."""
    monkeypatch.setattr(kafka, "DEFER_SECONDS", 0.0)
    found: list[bool] = []
    original = StreamMessage.nack

    async def recording_nack(self: StreamMessage[Any]) -> None:
        found.append(True)
        await original(self)

    monkeypatch.setattr(StreamMessage, "nack", recording_nack)
    return found


async def test_an_event_that_must_wait_is_put_back_not_dead_lettered_nor_retried_in_place(
    nacked: list[bool],
) -> None:
    harness = Harness(handler_failures=1, failure=kafka.NotYet)
    async with TestKafkaBroker(harness.broker) as broker:
        await broker.publish(submitted().to_json(), SETTINGS.topics.tickets)

    assert nacked == [True]
    assert harness.dead == []
    assert harness.handled == []


async def test_a_newer_schema_version_waits_for_an_upgrade_and_is_never_dead_lettered(
    nacked: list[bool],
) -> None:
    document = json.loads(submitted().to_json())
    document["schema_version"] = 2
    harness = Harness()
    async with TestKafkaBroker(harness.broker) as broker:
        await broker.publish(json.dumps(document).encode(), SETTINGS.topics.tickets)

    assert nacked == [True]
    assert harness.dead == []
    assert harness.handled == []


async def test_transient_failures_are_retried_until_they_pass() -> None:
    harness = Harness(handler_failures=5, failure=ConnectionError)
    async with TestKafkaBroker(harness.broker) as broker:
        await broker.publish(submitted().to_json(), SETTINGS.topics.tickets)

    assert len(harness.handled) == 1
    assert harness.dead == []


def test_backoff_grows_and_is_capped() -> None:
    assert all(0 <= kafka.backoff_seconds(1) <= 0.2 for _ in range(100))
    assert all(0 <= kafka.backoff_seconds(30) <= 30 for _ in range(100))


SQLITE_BUSY = OperationFailure(
    "[collection.go:177 sqlite.(*collection).UpdateAll.func1] database is locked (5) (SQLITE_BUSY)",
    code=1,
)


@pytest.mark.parametrize(
    ("failure", "transient"),
    [
        (SQLITE_BUSY, True),
        (AutoReconnect("primary stepped down"), True),
        (KafkaConnectionError("broker gone"), True),
        (TimeoutError(), True),
        (OperationFailure("unknown operator: $foo", code=2), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_passes_by_itself_is_told_from_what_does_not(
    failure: Exception, transient: bool
) -> None:
    assert kafka.is_transient(failure) is transient


async def test_a_busy_store_is_waited_out_never_dead_lettered() -> None:
    harness = Harness(handler_failures=kafka.HANDLER_ATTEMPTS + 2, failure=lambda _: SQLITE_BUSY)
    async with TestKafkaBroker(harness.broker) as broker:
        await broker.publish(submitted().to_json(), SETTINGS.topics.tickets)

    assert len(harness.handled) == 1
    assert harness.dead == []


class RecordingConsumer:
    """Stands in for aiokafka's consumer in what HandledOffsets asks of it."""

    def __init__(self, assigned: set[TopicPartition], failure: Exception | None = None) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []
        self._failure = failure

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        self.commits.append(offsets)


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        SETTINGS.topics.tickets, partition, offset, 0, 0, b"k", b"v", None, 1, 1, []
    )


def tp(partition: int) -> TopicPartition:
    return TopicPartition(SETTINGS.topics.tickets, partition)


async def test_handled_offsets_are_committed_together_past_the_last_handled_record() -> None:
    consumer = RecordingConsumer({tp(0), tp(1)})
    handled = kafka.HandledOffsets()
    for partition, offset in [(0, 5), (1, 9), (0, 6)]:
        handled.handled(consumer, record(partition, offset))

    await handled.commit()
    await handled.commit()  # nothing new: no second request

    assert consumer.commits == [{tp(0): 7, tp(1): 10}]


async def test_only_the_partitions_given_up_are_committed_on_revocation() -> None:
    consumer = RecordingConsumer({tp(0), tp(1)})
    handled = kafka.HandledOffsets()
    handled.handled(consumer, record(0, 1))
    handled.handled(consumer, record(1, 2))

    await handled.commit({tp(1)})
    await handled.commit()

    assert consumer.commits == [{tp(1): 3}, {tp(0): 2}]


async def test_offsets_of_a_partition_no_longer_held_are_dropped_not_committed() -> None:
    consumer = RecordingConsumer({tp(0)})
    handled = kafka.HandledOffsets()
    handled.handled(consumer, record(0, 1))
    handled.handled(consumer, record(2, 4))

    await handled.commit()

    assert consumer.commits == [{tp(0): 2}]


async def test_a_commit_that_fails_is_tried_again_unless_newer_records_were_handled() -> None:
    consumer = RecordingConsumer({tp(0), tp(1)}, failure=KafkaConnectionError("broker gone"))
    handled = kafka.HandledOffsets()
    handled.handled(consumer, record(0, 1))
    handled.handled(consumer, record(1, 1))

    await handled.commit()  # fails
    handled.handled(consumer, record(1, 2))
    await handled.commit()

    assert consumer.commits == [{tp(0): 2, tp(1): 3}]


async def test_a_commit_refused_for_a_rebalance_is_not_tried_again() -> None:
    consumer = RecordingConsumer({tp(0)}, failure=CommitFailedError("group rebalanced"))
    handled = kafka.HandledOffsets()
    handled.handled(consumer, record(0, 1))

    await handled.commit()
    await handled.commit()

    assert consumer.commits == []
