"""A rolling upgrade, seen by a consumer of the last release: a newer producer's extra fields
are read past, and an event in a newer schema version waits, uncommitted and not dead-lettered,
for the consumer's own upgrade. In a namespace of its own: the partition it holds stays held."""

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from shared.events import TicketSubmitted
from shared.settings import CommonSettings
from tests.conftest import TopicWatcher, committed_offset, wait_committed_past
from tests.harness import ServiceProcess, running_services
from tests.unit.samples import sample_ticket

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def routing(
    service_env: dict[str, str],
    module_settings: CommonSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    env = {**service_env, "PARKDESK_NAMESPACE": module_settings.namespace}
    logs = tmp_path_factory.mktemp("upgrade-service-logs")
    with running_services(["routing"], env, logs) as found:
        yield found["routing"]


def ticket_id_on(partition: int, partitions: int) -> str:
    """A fresh ticket id whose records land on `partition` (Kafka's default partitioner)."""
    choose = DefaultPartitioner()
    while True:
        candidate = "T-" + uuid.uuid4().hex.upper()[:26]
        every = list(range(partitions))
        if choose(candidate.encode(), every, every) == partition:
            return candidate


def submitted_document(ticket_id: str, subject: str) -> dict[str, Any]:
    ticket = sample_ticket(subject=subject).model_copy(update={"ticket_id": ticket_id})
    event = TicketSubmitted(ticket_id=ticket_id, correlation_id=uuid.uuid4().hex, ticket=ticket)
    document: dict[str, Any] = json.loads(event.to_json())
    return document


async def test_a_newer_producer_s_fields_are_read_and_a_newer_version_waits_unharmed(
    routing: ServiceProcess, module_settings: CommonSettings, watch: Callable[..., Any]
) -> None:
    settings = module_settings
    topics = settings.topics
    watcher: TopicWatcher = await watch(topics.tickets, topics.dead_letters)
    partitions = 6
    extra = submitted_document(ticket_id_on(0, partitions), "税务迁移")
    extra["published_by"] = "intake 2.0"
    extra["ticket"]["channel"] = "wechat"
    newer = submitted_document(ticket_id_on(1, partitions), "停电")
    newer["schema_version"] = 2
    behind = submitted_document(ticket_id_on(1, partitions), "停水")
    elsewhere = submitted_document(ticket_id_on(2, partitions), "停气")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        sent = {}
        for document in (extra, newer, behind, elsewhere):
            sent[document["ticket_id"]] = await producer.send_and_wait(
                topics.tickets, json.dumps(document).encode(), key=document["ticket_id"].encode()
            )
    finally:
        await producer.stop()
    assert sent[newer["ticket_id"]].partition == sent[behind["ticket_id"]].partition == 1

    def routed(ticket_id: str) -> bool:
        found = watcher.events(topics.tickets, ticket_id)
        return any(e["type"] == "ticket.routed" for e in found)

    # The extra fields, top-level and in the ticket, are read past: the ticket is routed.
    await watcher.wait_for(lambda _: routed(extra["ticket_id"]), 90, "the extended ticket routed")
    # The consumer has read on past its other partitions ...
    await watcher.wait_for(lambda _: routed(elsewhere["ticket_id"]), 90, "partition 2 read on")
    group = f"{settings.namespace}-routing"
    await wait_committed_past(
        settings, group, topics.tickets, 2, sent[elsewhere["ticket_id"]].offset
    )
    # ... but not past the newer version: not committed, not dead-lettered, and what is behind
    # it on its partition waits with it.
    held = sent[newer["ticket_id"]].offset
    committed = await committed_offset(settings.kafka_bootstrap_servers, group, topics.tickets, 1)
    assert committed <= held
    assert not routed(behind["ticket_id"])
    dead = [r for r in watcher.records if r.topic == topics.dead_letters]
    assert not [r for r in dead if (r.key or b"").decode() == newer["ticket_id"]]
