"""One ticket through intake → routing → sla → notify, each a real process, on the real broker
and store; observed from outside with a plain Kafka consumer, the stores and a webhook receiver."""

import asyncio
import hashlib
import hmac
import json
import random
import signal
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pymongo import AsyncMongoClient

from services.intake.store import IntakeStore, Recorded
from shared import asyncapi
from shared.auth import Role
from shared.departments import DEPARTMENTS
from shared.events import UndecodableEvent, decode_event
from shared.settings import CommonSettings
from tests.conftest import TopicWatcher, wait_committed_past
from tests.harness import (
    ServiceProcess,
    WebhookReceiver,
    running_services,
    submit,
    ticket_body,
)
from tests.unit.samples import sample_events, sample_submitted

pytestmark = pytest.mark.integration

SLA_SECONDS = 6.0
SWEEP_GRACE_SECONDS = 3.0
WEBHOOK_SECRET = "webhook-secret-for-tests"


@dataclass
class Suite:
    intake: ServiceProcess
    routing: ServiceProcess
    sla: ServiceProcess
    notify: ServiceProcess
    webhook: WebhookReceiver

    @property
    def processes(self) -> list[ServiceProcess]:
        return [self.intake, self.routing, self.sla, self.notify]


@pytest.fixture(scope="module")
def suite(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    logs = tmp_path_factory.mktemp("service-logs")
    with WebhookReceiver() as webhook:
        env = {
            **service_env,
            "PARKDESK_RESOLUTION_TARGET_SECONDS": str(SLA_SECONDS),
            "PARKDESK_FIRST_RESPONSE_TARGET_SECONDS": str(SLA_SECONDS / 3),
            "PARKDESK_WEBHOOK_URL": webhook.url,
            "PARKDESK_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PARKDESK_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
            "PARKDESK_OUTBOX_SWEEP_SECONDS": "1",
            "PARKDESK_OUTBOX_SWEEP_GRACE_SECONDS": str(SWEEP_GRACE_SECONDS),
        }
        with running_services(["intake", "routing", "sla", "notify"], env, logs) as found:
            yield Suite(**found, webhook=webhook)


async def test_ticket_travels_the_whole_pipeline(
    suite: Suite,
    http: httpx.AsyncClient,
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    topics = settings.topics
    watcher: TopicWatcher = await watch(
        topics.department("bj-education"), topics.sla, topics.tickets, topics.notifications
    )
    frontend = credential(Role.FRONTEND, "park-portal")

    answer = await submit(
        http,
        suite.intake,
        frontend,
        ticket_body(
            "孩子学籍问题",
            "我们公司从北京搬到天津，员工孩子的北京学籍 (student registration) 如何保留？",
        ),
    )

    assert answer.status_code == 202, answer.text
    ticket_id = answer.json()["ticket_id"]
    assert answer.json()["status"] == "submitted"

    # Routed to the Beijing education commission, on its own topic, as a full ticket.
    await watcher.wait_for(
        lambda w: bool(w.events(topics.department("bj-education"), ticket_id)),
        90,
        "the ticket on parkdesk.dept.bj-education",
    )
    assigned = watcher.events(topics.department("bj-education"), ticket_id)[0]
    assert assigned["type"] == "ticket.assigned"
    assert assigned["ticket"]["contact"]["language"] == "zh"
    assert "学籍" in assigned["reason"]

    # The clock: started, three warnings in order, then the breach escalated to supervision.
    expected = [
        "sla.started",
        "sla.first_response_missed",
        "sla.warning",
        "sla.warning",
        "sla.warning",
        "sla.breached",
    ]
    await watcher.wait_for(
        lambda w: len(w.events(topics.sla, ticket_id)) >= len(expected),
        SLA_SECONDS + 90,
        "the SLA warnings and breach",
    )
    sla_events = watcher.events(topics.sla, ticket_id)
    assert [e["type"] for e in sla_events] == expected
    assert [e["threshold"] for e in sla_events if e["type"] == "sla.warning"] == [0.5, 0.75, 0.9]
    breach = sla_events[-1]
    assert breach["department"] == "bj-education"
    assert breach["escalated_to"] == "park-supervision"
    assert breach["occurred_at"] >= breach["resolution_due_at"]

    # Notifications: recorded once each in notify's store, webhooks signed and received.
    notifications = mongo[f"{settings.namespace}_notify"]["notifications"]
    expected_inbox = Counter(
        {
            ("enterprise:E-acme", "ticket.submitted"): 1,
            ("enterprise:E-acme", "ticket.routed"): 1,
            ("department:bj-education", "ticket.routed"): 1,
            ("department:bj-education", "sla.warning"): 3,
            ("department:bj-education", "sla.first_response_missed"): 1,
            ("department:bj-education", "sla.breached"): 1,
            ("department:park-supervision", "sla.breached"): 1,
            ("enterprise:E-acme", "sla.breached"): 1,
        }
    )

    async def inbox_counts() -> Counter[tuple[str, str]]:
        cursor = notifications.find({"ticket_id": ticket_id, "channel": "inbox"})
        return Counter([(d["recipient"], d["trigger_type"]) async for d in cursor])

    await watcher.wait_for(
        lambda w: len(w.events(topics.notifications, ticket_id)) >= 17,
        90,
        "notification.sent for every notification",
    )
    assert await inbox_counts() == expected_inbox
    webhooks = [r for r in suite.webhook.requests if r.json()["ticket_id"] == ticket_id]
    # At least once: a repeat is the same notification, byte for byte, for the receiver to drop.
    by_id: dict[str, bytes] = {}
    for request in webhooks:
        assert by_id.setdefault(request.json()["notification_id"], request.body) == request.body
    assert sorted(json.loads(body)["recipient"] for body in by_id.values()) == sorted(
        ["department:bj-education"] * 6 + ["department:park-supervision"]
    )
    for request in webhooks:
        timestamp = request.headers["X-Parkdesk-Timestamp"]
        signed = hmac.new(
            WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
        assert request.headers["X-Parkdesk-Signature"] == f"sha256={signed}"
    # Every one ended delivered, in the delivery log (written just after the announcement).
    ids = [d["_id"] async for d in notifications.find({"ticket_id": ticket_id}, {"_id": 1})]
    outcomes = mongo[f"{settings.namespace}_notify"]["outcomes"]

    async def ended() -> list[str]:
        return [d["status"] async for d in outcomes.find({"_id": {"$in": ids}})]

    for _ in range(100):
        if len(await ended()) == len(ids):
            break
        await asyncio.sleep(0.1)
    assert await ended() == ["delivered"] * len(ids)

    # The enterprise follows it: status, department and history from intake; its inbox.
    enterprise = credential(Role.ENTERPRISE, "E-acme")
    view = (await http.get(f"{suite.intake.url}/v1/tickets/{ticket_id}", headers=enterprise)).json()
    assert view["status"] == "routed"
    assert view["department"] == "bj-education"
    assert [h["type"] for h in view["history"]] == [
        "ticket.submitted",
        "ticket.routed",
        "sla.started",
        "sla.first_response_missed",
        "sla.warning",
        "sla.warning",
        "sla.warning",
        "sla.breached",
    ]
    assert view["breached"] is True
    assert view["remaining_seconds"] < 0
    # The largest page: other tests' tickets of this enterprise may be newer than this one's.
    inbox = (
        await http.get(f"{suite.notify.url}/v1/inbox", params={"limit": 200}, headers=enterprise)
    ).json()
    subjects = [item["subject"] for item in inbox["items"] if item["ticket_id"] == ticket_id]
    assert f"工单 {ticket_id} 已受理" in subjects
    assert inbox["unread"] >= 3
    # Reading one item: the unread count drops by one, and only once.
    receipt = next(i for i in inbox["items"] if i["subject"] == f"工单 {ticket_id} 已受理")
    read_url = f"{suite.notify.url}/v1/inbox/{receipt['id']}/read"
    for _ in range(2):
        assert (await http.post(read_url, headers=enterprise)).status_code == 204
    after = (
        await http.get(f"{suite.notify.url}/v1/inbox", params={"limit": 200}, headers=enterprise)
    ).json()
    assert after["unread"] == inbox["unread"] - 1
    assert next(i for i in after["items"] if i["id"] == receipt["id"])["read"] is True
    # Nobody else can mark it.
    stranger = credential(Role.ENTERPRISE, "E-other")
    assert (await http.post(read_url, headers=stranger)).status_code == 404


async def first_clock_version(
    mongo: AsyncMongoClient[dict[str, Any]], settings: CommonSettings, ticket_id: str
) -> dict[str, Any]:
    """The clock's first stored version, from whichever partition's collection holds it."""
    sla = mongo[f"{settings.namespace}_sla"]
    for name in await sla.list_collection_names():
        if name.startswith("clocks_p"):
            found = await sla[name].find_one({"_id": f"{ticket_id}#1"})
            if found is not None:
                return found
    raise AssertionError(f"no clock for {ticket_id}")


async def test_same_idempotency_key_gives_the_same_ticket(
    suite: Suite, http: httpx.AsyncClient, credential: Callable[[Role, str], dict[str, str]]
) -> None:
    frontend = credential(Role.FRONTEND, "park-portal")
    body = ticket_body("Invoice question", "How do we issue VAT invoices in Tianjin?", "en")

    first = await submit(http, suite.intake, frontend, body, key="retry-1")
    again = await submit(http, suite.intake, frontend, body, key="retry-1")
    different = await submit(
        http, suite.intake, frontend, {**body, "subject": "Another"}, key="retry-1"
    )

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert different.status_code == 409


async def test_redelivered_event_changes_nothing(
    suite: Suite,
    http: httpx.AsyncClient,
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    topics = settings.topics
    watcher: TopicWatcher = await watch(topics.tickets, topics.department("tj-tax"), topics.sla)
    answer = await submit(
        http,
        suite.intake,
        credential(Role.FRONTEND, "park-portal"),
        ticket_body("增值税发票", "请问如何在天津开具增值税发票 (VAT invoice)?"),
    )
    ticket_id = answer.json()["ticket_id"]
    await watcher.wait_for(
        lambda w: len(w.events(topics.sla, ticket_id)) >= 2, 90, "the clock to start and warn"
    )

    async def snapshot() -> dict[str, Any]:
        notify = mongo[f"{settings.namespace}_notify"]["notifications"]
        return {
            "decisions": await mongo[f"{settings.namespace}_routing"]["decisions"].count_documents(
                {"_id": ticket_id}
            ),
            # The clock as started: a redelivered ticket.routed must not start it again.
            "clock": await first_clock_version(mongo, settings, ticket_id),
            # Those the redelivered events cause; the running clock adds warnings meanwhile.
            "notifications": await notify.count_documents(
                {
                    "ticket_id": ticket_id,
                    "trigger_type": {"$in": ["ticket.submitted", "ticket.routed"]},
                }
            ),
        }

    before = await snapshot()
    # Redeliver the ticket's submitted and routed events, byte for byte, as a broker would.
    originals = [
        r for r in watcher.records if r.topic == topics.tickets and r.key == ticket_id.encode()
    ]
    assert {json.loads(r.value or b"")["type"] for r in originals} == {
        "ticket.submitted",
        "ticket.routed",
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        sent = [
            await producer.send_and_wait(r.topic, r.value, key=r.key, headers=list(r.headers))
            for r in originals
        ]
    finally:
        await producer.stop()
    # Wait until every consumer group has committed past the redelivered records.
    last = sent[-1]
    for service in ("intake", "routing", "sla", "notify"):
        await wait_committed_past(
            settings, f"{settings.namespace}-{service}", last.topic, last.partition, last.offset
        )

    assert await snapshot() == before
    # Routing answered the redelivery with the very same events (same ids), nothing new.
    routed_ids = {
        e["event_id"]
        for e in watcher.events(topics.tickets, ticket_id)
        if e["type"] == "ticket.routed"
    }
    assigned_ids = {e["event_id"] for e in watcher.events(topics.department("tj-tax"), ticket_id)}
    assert len(routed_ids) == 1
    assert len(assigned_ids) == 1


async def test_tenants_see_only_their_own(
    suite: Suite, http: httpx.AsyncClient, credential: Callable[[Role, str], dict[str, str]]
) -> None:
    owner = credential(Role.ENTERPRISE, "E-owner")
    answer = await submit(
        http, suite.intake, owner, ticket_body("宿舍维修", "宿舍空调坏了", enterprise_id="E-owner")
    )
    assert answer.status_code == 202
    url = f"{suite.intake.url}/v1/tickets/{answer.json()['ticket_id']}"

    assert (await http.get(url, headers=owner)).status_code == 200
    # Another enterprise may not learn that the ticket exists.
    assert (await http.get(url, headers=credential(Role.ENTERPRISE, "E-other"))).status_code == 404
    assert (await http.get(url)).status_code == 401
    # Nor open tickets in another's name.
    forged = await submit(
        http,
        suite.intake,
        credential(Role.ENTERPRISE, "E-other"),
        ticket_body("x", "y", enterprise_id="E-owner"),
    )
    assert forged.status_code == 403
    # A department reads its own inbox only.
    inbox = f"{suite.notify.url}/v1/inbox"
    tax = credential(Role.DEPARTMENT, "tj-tax")
    assert (await http.get(inbox, headers=tax)).status_code == 200
    other = await http.get(inbox, params={"recipient": "department:bj-hrss"}, headers=tax)
    assert other.status_code == 404


async def test_bad_input_gets_a_clear_4xx(
    suite: Suite, http: httpx.AsyncClient, credential: Callable[[Role, str], dict[str, str]]
) -> None:
    frontend = credential(Role.FRONTEND, "park-portal")
    body = ticket_body("s", "d")
    body["contact"]["email"] = "not-an-email"
    body["contact"]["phone"] = "+86 138 1234 5678 x"
    invalid = await submit(http, suite.intake, frontend, body)
    assert invalid.status_code == 422
    assert ["body", "contact", "email"] in [e["loc"] for e in invalid.json()["detail"]]
    # What was sent is never quoted back: it may be personal data.
    assert "not-an-email" not in invalid.text
    assert "1234 5678" not in invalid.text

    # A lone surrogate escape (it cannot even be encoded) and a NUL: 422 naming the field.
    for bad in (r'"\ud800 电费"', r'"停电\u0000"'):
        raw = json.dumps(ticket_body("SUBJECT", "d")).replace('"SUBJECT"', bad, 1)
        refused = await http.post(
            f"{suite.intake.url}/v1/tickets",
            content=raw.encode(),
            headers={
                **frontend,
                "Idempotency-Key": uuid.uuid4().hex,
                "Content-Type": "application/json",
            },
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert ["body", "subject"] in [e["loc"] for e in refused.json()["detail"]]

    extra = await submit(http, suite.intake, frontend, {**ticket_body("s", "d"), "priority": "vip"})
    assert extra.status_code == 422

    no_key = await http.post(
        f"{suite.intake.url}/v1/tickets", json=ticket_body("s", "d"), headers=frontend
    )
    assert no_key.status_code == 422
    assert ["header", "idempotency-key"] in [e["loc"] for e in no_key.json()["detail"]]

    huge = await submit(http, suite.intake, frontend, ticket_body("s", "长" * 70_000))
    assert huge.status_code == 413


async def test_poison_records_are_dead_lettered_and_partitions_move_on(
    suite: Suite, settings: CommonSettings, watch: Callable[..., Any]
) -> None:
    topics = settings.topics
    watcher: TopicWatcher = await watch(topics.dead_letters)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        poison = [
            await producer.send_and_wait(topics.tickets, b"\x00not json", key=b"poison-1"),
            await producer.send_and_wait(
                topics.tickets,
                json.dumps({"type": "ticket.submitted", "schema_version": 99}).encode(),
                key=b"poison-1",
            ),
        ]
    finally:
        await producer.stop()

    groups = ("intake", "routing", "sla", "notify")
    for service in groups:
        await wait_committed_past(
            settings,
            f"{settings.namespace}-{service}",
            topics.tickets,
            poison[-1].partition,
            poison[-1].offset,
        )

    def dead_letters_for(offset: int) -> set[str]:
        # Other tests dead-letter on this topic too (notify's undeliverable notifications
        # carry no source offset): only records of the poison's partition and offset count.
        source = (str(poison[0].partition).encode(), str(offset).encode())
        return {
            dict(r.headers)["dlt-service"].decode()
            for r in watcher.records
            if (
                dict(r.headers).get("dlt-source-partition"),
                dict(r.headers).get("dlt-source-offset"),
            )
            == source
        }

    await watcher.wait_for(
        lambda _: all(dead_letters_for(p.offset) == set(groups) for p in poison),
        90,
        "dead letters from every service",
    )
    reasons = {dict(r.headers)["dlt-reason"].decode() for r in watcher.records}
    assert any("not JSON" in reason for reason in reasons)
    assert any("schema version" in reason for reason in reasons)
    assert {r.value for r in watcher.records} >= {b"\x00not json"}


def undecodable_payloads(count: int, seed: int) -> list[bytes]:
    """Random bytes and mutations of valid events of every type, kept only if decoding refuses
    them: each must reach the dead letters of every group that reads its topic."""
    rng = random.Random(seed)
    valid = [event.model_dump(mode="json") for event in sample_events()]
    payloads: list[bytes] = []
    while len(payloads) < count:
        if rng.random() < 0.3:
            raw = rng.randbytes(rng.randint(0, 200))
        else:
            document = dict(rng.choice(valid))
            key = rng.choice(sorted(document))
            choice = rng.random()
            if choice < 0.3:
                del document[key]
            elif choice < 0.6:
                document[key] = rng.choice([None, [], {}, 7, -1.5, "", "x" * 300, True])
            else:
                document[f"unexpected_{rng.randint(0, 99)}"] = 1
            raw = json.dumps(document).encode()
        try:
            decode_event(raw)
        except UndecodableEvent:
            payloads.append(raw)
    return payloads


async def test_random_and_mutated_payloads_are_dead_lettered_and_nothing_stops(
    suite: Suite, settings: CommonSettings, watch: Callable[..., Any]
) -> None:
    topics = settings.topics
    readers = {
        topics.tickets: ("intake", "routing", "sla", "notify"),
        topics.sla: ("intake", "notify"),
    }
    watcher: TopicWatcher = await watch(topics.dead_letters)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    sent = {}
    try:
        for topic in readers:
            payloads = undecodable_payloads(25, seed=len(topic))
            sent[topic] = [
                await producer.send_and_wait(topic, raw, key=b"fuzz") for raw in payloads
            ]
    finally:
        await producer.stop()

    for topic, groups in readers.items():
        last = sent[topic][-1]
        for group in groups:
            await wait_committed_past(
                settings, f"{settings.namespace}-{group}", topic, last.partition, last.offset, 120
            )

    def dead_lettered(topic: str, offset: int) -> set[str]:
        return {
            dict(r.headers)["dlt-service"].decode()
            for r in watcher.records
            if dict(r.headers).get("dlt-source-topic") == topic.encode()
            and dict(r.headers).get("dlt-source-offset") == str(offset).encode()
        }

    await watcher.wait_for(
        lambda _: all(
            dead_lettered(topic, record.offset) == set(readers[topic])
            for topic, records in sent.items()
            for record in records
        ),
        60,
        "a dead letter from every reader of every payload",
    )
    async with httpx.AsyncClient(timeout=10) as http:
        for process in suite.processes:
            assert process.process is not None
            assert process.process.poll() is None, f"{process.name} died"
            assert (await http.get(f"{process.url}/health")).status_code == 200


async def test_one_correlation_id_follows_a_ticket_through_kafka_and_every_log(
    suite: Suite,
    http: httpx.AsyncClient,
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
) -> None:
    """The frontend's X-Correlation-ID comes back on the answer, rides every event of the
    ticket (body and Kafka header), and marks the log lines each service writes about it;
    every log line is JSON, and no line holds the contact's phone or e-mail."""
    topics = settings.topics
    watcher: TopicWatcher = await watch(topics.tickets, topics.sla)
    correlation_id = f"portal-{uuid.uuid4().hex[:12]}"
    body = ticket_body("孩子学籍", "员工搬到天津后，孩子的北京学籍如何保留？")
    answer = await submit(
        http,
        suite.intake,
        {**credential(Role.FRONTEND, "park-portal"), "X-Correlation-ID": correlation_id},
        body,
    )
    assert answer.status_code == 202
    assert answer.headers["x-correlation-id"] == correlation_id
    ticket_id = answer.json()["ticket_id"]

    def seen(types: set[str]) -> bool:
        return types <= {e["type"] for e in watcher.events(ticket_id=ticket_id)}

    await watcher.wait_for(
        lambda _: seen({"ticket.submitted", "ticket.routed", "sla.started"}), 60, "the ticket"
    )
    of_ticket = [record for record in watcher.records if record.key == ticket_id.encode()]
    assert len(of_ticket) >= 3
    for record in of_ticket:
        assert dict(record.headers)["correlation-id"].decode() == correlation_id
        assert json.loads(record.value or b"")["correlation_id"] == correlation_id

    def log_lines(process: ServiceProcess) -> list[dict[str, Any]]:
        text = (process.log_dir / f"{process.name}.{process.starts}.log").read_text()
        assert body["contact"]["email"] not in text
        assert body["contact"]["phone"] not in text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    for process, says in ((suite.intake, "accepted"), (suite.routing, "routed to")):
        about_it = [
            line
            for line in log_lines(process)
            if line.get("correlation_id") == correlation_id and ticket_id in line["message"]
        ]
        assert any(says in line["message"] for line in about_it), process.name
        assert all(line["service"] == process.name for line in about_it)
    for process in (suite.sla, suite.notify):
        log_lines(process)  # JSON throughout, nothing personal


async def test_every_event_the_suite_published_is_in_its_asyncapi_document(
    suite: Suite, http: httpx.AsyncClient, settings: CommonSettings, watch: Callable[..., Any]
) -> None:
    """After the tickets of the tests above: each event type found on each topic is one the
    served AsyncAPI document lists for that topic."""
    topics = settings.topics
    names = [
        topics.tickets,
        topics.sla,
        topics.notifications,
        *(topics.department(code) for code in DEPARTMENTS),
    ]
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await probe.start()
    try:
        partitions = [
            TopicPartition(name, partition)
            for name in names
            for partition in range(topics.spec(name).partitions)
        ]
        ends = await probe.end_offsets(partitions)
    finally:
        await probe.stop()
    watcher: TopicWatcher = await watch(*names)

    def caught_up(_: TopicWatcher) -> bool:
        seen: dict[tuple[str, int], int] = {}
        for r in watcher.records:
            seen[(r.topic, r.partition)] = max(seen.get((r.topic, r.partition), -1), r.offset)
        return all(seen.get((tp.topic, tp.partition), -1) >= end - 1 for tp, end in ends.items())

    await watcher.wait_for(caught_up, 60, "every record published so far")
    document = (await http.get(f"{suite.intake.url}/asyncapi.json")).json()
    found: dict[str, set[str]] = {}
    for record in watcher.records:
        try:
            event_type = decode_event(record.value or b"").type
        except UndecodableEvent:
            continue  # the poison and fuzz records of the dead-letter tests
        found.setdefault(record.topic, set()).add(event_type)
    assert {"ticket.submitted", "ticket.routed", "sla.started", "notification.sent"} <= set().union(
        *found.values()
    )
    for topic, types in found.items():
        undocumented = types - asyncapi.event_types(document, topic)
        assert not undocumented, f"{topic} carries {undocumented}, not in the AsyncAPI document"


async def test_every_service_is_ready_and_its_metrics_count_what_it_did(
    suite: Suite, settings: CommonSettings
) -> None:
    """After the tickets and poison of the tests above: every service reports ready, and its
    /metrics show the events it handled, published and dead-lettered, and its consumer lag."""
    async with httpx.AsyncClient(timeout=10) as http:
        for process in suite.processes:
            ready = await http.get(f"{process.url}/ready")
            assert ready.status_code == 200, (process.name, ready.text)
            # sla also serves the live board, whose feed must have its place on the SLA topic.
            own = {"board_feed"} if process.name == "sla" else set()
            assert set(ready.json()["checks"]) == {"broker", "store", "consumer_group", *own}

        async def samples(process: ServiceProcess) -> list[Sample]:
            exposition = (await http.get(f"{process.url}/metrics")).text
            return [s for f in text_string_to_metric_families(exposition) for s in f.samples]

        def total(found: list[Sample], name: str, **labels: str) -> float:
            return sum(
                s.value
                for s in found
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
            )

        routing = await samples(suite.routing)
        assert (
            total(
                routing,
                "parkdesk_events_consumed_total",
                type="ticket.submitted",
                outcome="handled",
            )
            >= 1
        )
        assert total(routing, "parkdesk_events_published_total", type="ticket.routed") >= 1
        assert total(routing, "parkdesk_dead_letters_total") >= 2  # the two poison records
        intake = await samples(suite.intake)
        assert (
            total(
                intake,
                "parkdesk_http_requests_total",
                route="/v1/tickets",
                method="POST",
                status="202",
            )
            >= 1
        )
        sla = await samples(suite.sla)
        assert total(sla, "parkdesk_sla_events_total", type="sla.breached") >= 1
        assert any(s.name == "parkdesk_sla_open_clocks" for s in sla)
        notify = await samples(suite.notify)
        assert (
            total(notify, "parkdesk_notifications_total", channel="webhook", status="delivered")
            >= 1
        )

        tickets = settings.topics.tickets
        every_partition = {
            str(p)
            for spec in settings.topics.specs()
            if spec.name == tickets
            for p in range(spec.partitions)
        }

        async def lag_reported() -> bool:
            # routing runs several consumers of the group: their partitions together are all.
            found = await samples(suite.routing)
            return every_partition == {
                s.labels["partition"]
                for s in found
                if s.name == "parkdesk_consumer_lag" and s.labels["topic"] == tickets
            }

        for _ in range(30):  # the gauge is refreshed every 10 s
            if await lag_reported():
                break
            await asyncio.sleep(1)
        assert await lag_reported()


async def test_an_accepted_ticket_survives_the_intake_that_accepted_it_dying(
    suite: Suite,
    http: httpx.AsyncClient,
    service_env: dict[str, str],
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
    tmp_path: Path,
) -> None:
    # A second intake replica accepts the ticket and is killed at once: whether or not it
    # published the ticket first, the suite's intake sweeps what it left.
    replica = ServiceProcess("intake", service_env, tmp_path)
    replica.start()
    replica.wait_ready()
    watcher: TopicWatcher = await watch(settings.topics.department("tj-housing"))
    answer = await http.post(
        f"{replica.url}/v1/tickets",
        json=ticket_body("人才公寓", "申请人才公寓需要什么材料？"),
        headers={**credential(Role.FRONTEND, "park-portal"), "Idempotency-Key": "crash-1"},
    )
    replica.kill()

    assert answer.status_code == 202
    ticket_id = answer.json()["ticket_id"]
    await watcher.wait_for(
        lambda w: bool(w.events(settings.topics.department("tj-housing"), ticket_id)),
        90,
        "the ticket accepted by the killed replica on its department topic",
    )


async def test_an_event_stored_but_never_published_is_swept_onto_kafka(
    suite: Suite,
    settings: CommonSettings,
    watch: Callable[..., Any],
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    # Exactly what an intake instance leaves when it dies after storing an event and before
    # publishing it: an outbox document without a relayed mark.
    now = datetime.now(UTC)
    stranded = sample_submitted(now, "stranded-1")
    ticket_id = stranded.ticket_id
    watcher: TopicWatcher = await watch(settings.topics.tickets)
    store = IntakeStore(mongo[settings.database_name("intake")])
    assert await store.record(stranded, 1, recorded_at=now) is Recorded.STORED

    await watcher.wait_for(
        lambda w: bool(w.events(settings.topics.tickets, ticket_id)),
        SWEEP_GRACE_SECONDS + 60,
        "the stranded event on the tickets topic",
    )
    published = watcher.events(settings.topics.tickets, ticket_id)
    submissions = [e for e in published if e["type"] == "ticket.submitted"]
    assert [e["event_id"] for e in submissions] == [str(stranded.event_id)]
    assert await store.relayed_among([str(stranded.event_id)]) == {str(stranded.event_id)}


async def test_sla_killed_between_warnings_fires_every_milestone_once(
    suite: Suite,
    http: httpx.AsyncClient,
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
) -> None:
    topics = settings.topics
    watcher: TopicWatcher = await watch(topics.sla)
    answer = await submit(
        http,
        suite.intake,
        credential(Role.FRONTEND, "park-portal"),
        ticket_body("停电", "园区B座停电了 (power outage)"),
    )
    ticket_id = answer.json()["ticket_id"]
    await watcher.wait_for(
        lambda w: any(e["type"] == "sla.warning" for e in w.events(topics.sla, ticket_id)),
        SLA_SECONDS + 90,
        "the first warning",
    )

    suite.sla.crash_and_restart()

    await watcher.wait_for(
        lambda w: any(e["type"] == "sla.breached" for e in w.events(topics.sla, ticket_id)),
        60,
        "the breach after the restart",
    )
    await asyncio.sleep(2)  # room for any repeat to show up
    milestones = Counter(
        (e["type"], e.get("threshold")) for e in watcher.events(topics.sla, ticket_id)
    )
    assert milestones == Counter(
        {
            ("sla.started", None): 1,
            ("sla.first_response_missed", None): 1,
            ("sla.warning", 0.5): 1,
            ("sla.warning", 0.75): 1,
            ("sla.warning", 0.9): 1,
            ("sla.breached", None): 1,
        }
    )


async def test_notify_killed_mid_ticket_loses_and_repeats_no_notification(
    suite: Suite,
    http: httpx.AsyncClient,
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    mongo: AsyncMongoClient[dict[str, Any]],
    watch: Callable[..., Any],
) -> None:
    topics = settings.topics
    watcher: TopicWatcher = await watch(topics.notifications)
    answer = await submit(
        http,
        suite.intake,
        credential(Role.FRONTEND, "park-portal"),
        ticket_body("燃气", "园区C座燃气中断 (gas supply cut)"),
    )
    ticket_id = answer.json()["ticket_id"]
    await watcher.wait_for(
        lambda w: len(w.events(topics.notifications, ticket_id)) >= 2, 60, "the first notices"
    )

    suite.notify.crash_and_restart()

    notifications = mongo[f"{settings.namespace}_notify"]["notifications"]
    outcomes = mongo[f"{settings.namespace}_notify"]["outcomes"]

    async def ended() -> tuple[list[str], list[str]]:
        ids = [d["_id"] async for d in notifications.find({"ticket_id": ticket_id}, {"_id": 1})]
        done = [d["status"] async for d in outcomes.find({"_id": {"$in": ids}})]
        return ids, done

    # Through the breach, 10 inbox notices: 3 to the enterprise (receipt, routed, apology), 6 to
    # the department (new ticket, first-response miss, 3 warnings, breach), 1 to supervision;
    # and a webhook copy of the 7 that are not the enterprise's. Every one stored once and
    # delivered, whatever the kill interrupted.
    for _ in range(900):
        ids, done = await ended()
        if len(ids) == 17 and len(done) == 17:
            break
        await asyncio.sleep(0.1)
    assert Counter(i.rsplit(":", 1)[1] for i in ids) == {"inbox": 10, "webhook": 7}
    assert done == ["delivered"] * 17
    hooks = {r.headers["X-Parkdesk-Notification-Id"] for r in suite.webhook.requests}
    assert {i for i in ids if i.endswith(":webhook")} <= hooks


async def test_services_stop_gracefully_on_sigterm(suite: Suite) -> None:
    """Last in this module: it stops the suite's routing and starts it again."""
    # Uvicorn re-raises SIGTERM once its shutdown is complete, so -SIGTERM is a clean exit.
    assert suite.routing.stop(timeout=20) in (0, -signal.SIGTERM)
    log = suite.routing.log_tail(lines=10)
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
    suite.routing.start()
    suite.routing.wait_ready()
