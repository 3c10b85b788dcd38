"""Nothing lost, nothing twice: the four services under a steady load of tickets while faults
hit them for real, then an account, from the topics and the stores, of what became of every
ticket that intake accepted with a 202.

Faults: a SIGKILL of each service in turn, restarted at once; a SIGKILL of a Kafka broker,
restarted (the local single-node infrastructure) or gone for good (a three-broker cluster); the
MongoDB-wire store stopped for a while and started again. The load is a frontend's: it retries
a request that failed or was refused with 503 under the same Idempotency-Key, as intake asks.

Every ticket's lifecycle is known in advance: no one acts on it, so within the SLA target it is
routed, its clock starts, warns at 50, 75 and 90 %, misses its first response and breaches; and
notify sends the 17 notifications of that path (10 inbox, 7 webhook copies).
"""

import asyncio
import json
import logging
import random
import secrets
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from parkdesk_cli.main import read_to_end
from shared.admin import provisioned
from shared.auth import Role, issue_credential
from shared.departments import DEPARTMENTS
from shared.settings import CommonSettings
from tests.chaos.infra import KafkaCluster, LocalInfrastructure
from tests.harness import (
    ServiceProcess,
    WebhookReceiver,
    environment,
    running_services,
    ticket_body,
)

log = logging.getLogger("parkdesk.chaos")

SERVICES = ["intake", "routing", "sla", "notify"]
WARNINGS = (0.5, 0.75, 0.9)
EXPECTED_MILESTONES = {
    ("sla.started", None),
    ("sla.first_response_missed", None),
    ("sla.breached", None),
    *(("sla.warning", threshold) for threshold in WARNINGS),
}
EXPECTED_NOTIFICATIONS = Counter({"inbox": 10, "webhook": 7})
REQUEST_ATTEMPTS = 5

Fault = Callable[["Run"], Awaitable[str]]
"""Breaks something and returns what it did, for the account."""


@dataclass
class Load:
    tickets: int
    per_second: float
    sla_seconds: float


@dataclass
class Run:
    settings: CommonSettings
    processes: dict[str, ServiceProcess]
    webhook: WebhookReceiver
    restart_kafka: Callable[[], Awaitable[None]] | None = None
    stop_store: Callable[[], Awaitable[None]] | None = None
    start_store: Callable[[], Awaitable[None]] | None = None
    kill_broker: Callable[[], Awaitable[None]] | None = None
    faults_done: list[str] = field(default_factory=list)


@dataclass
class Sent:
    accepted: dict[str, float] = field(default_factory=dict)
    """Ticket id → when intake answered 202."""
    unavailable: int = 0
    """503 answers (the store was down): retried."""
    failed_attempts: int = 0
    """Connection errors and timeouts: retried."""
    given_up: int = 0
    """Requests that never got a 202 in all their attempts: not accepted, so not owed."""


async def post_ticket(http: httpx.AsyncClient, url: str, token: str, n: int, sent: Sent) -> None:
    body = ticket_body(f"chaos {n}", "园区停电了，请尽快处理 (power cut)", enterprise_id=f"E-{n}")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    for attempt in range(REQUEST_ATTEMPTS):
        try:
            answer = await http.post(url, json=body, headers=headers)
        except httpx.HTTPError:
            sent.failed_attempts += 1
        else:
            if answer.status_code == 202:
                sent.accepted[answer.json()["ticket_id"]] = time.time()
                return
            if answer.status_code != 503:
                raise AssertionError(f"intake answered {answer.status_code}: {answer.text}")
            sent.unavailable += 1
        await asyncio.sleep(min(8.0, 0.5 * 2**attempt))
    sent.given_up += 1


async def generate(url: str, token: str, load: Load, sent: Sent) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        start = time.perf_counter()
        tasks = []
        for n in range(load.tickets):
            delay = start + n / load.per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post_ticket(http, url, token, n, sent)))
        await asyncio.gather(*tasks)


def kill_service(name: str) -> Fault:
    async def fault(run: Run) -> str:
        await asyncio.to_thread(run.processes[name].crash_and_restart)
        return f"SIGKILL {name}, restarted"

    return fault


async def restart_kafka(run: Run) -> str:
    assert run.restart_kafka is not None
    await run.restart_kafka()
    return "SIGKILL the Kafka broker, restarted"


async def kill_one_broker(run: Run) -> str:
    assert run.kill_broker is not None
    await run.kill_broker()
    return "SIGKILL one of three brokers, for good"


def store_outage(seconds: float) -> Fault:
    async def fault(run: Run) -> str:
        assert run.stop_store is not None
        assert run.start_store is not None
        await run.stop_store()
        await asyncio.sleep(seconds)
        await run.start_store()
        return f"store stopped for {seconds:.0f} s, started again"

    return fault


async def inject(run: Run, faults: list[Fault], window: float, seed: int) -> None:
    """Each fault in turn, at a random moment of its share of the load's window."""
    chance = random.Random(seed)
    share = window / max(1, len(faults))
    start = time.perf_counter()
    for index, fault in enumerate(faults):
        moment = start + share * index + chance.uniform(0.1, 0.7) * share
        await asyncio.sleep(max(0.0, moment - time.perf_counter()))
        done = await fault(run)
        log.warning("chaos: %s", done)
        run.faults_done.append(done)


@dataclass
class Account:
    accepted: int = 0
    lost: int = 0
    """Accepted, but never routed to its department."""
    clocks_wrong: int = 0
    """A milestone missing, or fired under two event ids."""
    notifications_missing: int = 0
    notifications_duplicated: int = 0
    undelivered: int = 0
    """Stored but without a delivered outcome."""
    republished_records: int = 0
    """Records published again with the same event id (dropped by consumers): allowed."""
    webhook_redeliveries: int = 0
    """Webhook requests received more than once (at least once, by design): allowed."""
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.clocks_wrong
            or self.notifications_missing
            or self.notifications_duplicated
            or self.undelivered
        )

    def note(self, problem: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(problem)


async def read_topics(settings: CommonSettings, topics: list[str]) -> list[dict[str, Any]]:
    """Every event on the topics, from the beginning to their current end."""
    events = []
    for record in await read_to_end(settings, *topics):
        try:
            events.append(json.loads(record.value or b""))
        except ValueError:
            continue
    return events


async def account_for(
    settings: CommonSettings, accepted: set[str], webhook: WebhookReceiver
) -> Account:
    topics = settings.topics
    account = Account(accepted=len(accepted))
    department_topics = [topics.department(code) for code in DEPARTMENTS]
    assigned: dict[str, set[str]] = defaultdict(set)
    milestones: dict[str, dict[tuple[str, float | None], set[str]]] = defaultdict(
        lambda: defaultdict(set)
    )
    records: Counter[str] = Counter()
    for event in await read_topics(settings, [topics.sla, *department_topics]):
        ticket_id = event.get("ticket_id")
        if ticket_id not in accepted:
            continue
        records[event["event_id"]] += 1
        if event["type"] == "ticket.assigned":
            assigned[ticket_id].add(event["event_id"])
        elif event["type"].startswith("sla."):
            key = (event["type"], event.get("threshold"))
            milestones[ticket_id][key].add(event["event_id"])
    account.republished_records = sum(n - 1 for n in records.values())

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_url.get_secret_value()
    )
    try:
        notify = client[settings.database_name("notify")]
        stored: dict[str, list[str]] = defaultdict(list)
        async for document in notify["notifications"].find({}, {"ticket_id": 1}):
            stored[document["ticket_id"]].append(document["_id"])
        delivered = {
            d["_id"] async for d in notify["outcomes"].find({"status": "delivered"}, {"_id": 1})
        }
    finally:
        await client.close()

    for ticket_id in sorted(accepted):
        if len(assigned[ticket_id]) != 1:
            account.lost += not assigned[ticket_id]
            account.note(f"{ticket_id}: assigned under {len(assigned[ticket_id])} event ids")
        fired = milestones[ticket_id]
        if set(fired) != EXPECTED_MILESTONES or any(len(ids) != 1 for ids in fired.values()):
            account.clocks_wrong += 1
            account.note(f"{ticket_id}: milestones {sorted((k, len(v)) for k, v in fired.items())}")
        channels = Counter(i.rsplit(":", 1)[1] for i in stored[ticket_id])
        account.notifications_missing += sum((EXPECTED_NOTIFICATIONS - channels).values())
        account.notifications_duplicated += sum((channels - EXPECTED_NOTIFICATIONS).values())
        if channels != EXPECTED_NOTIFICATIONS:
            account.note(f"{ticket_id}: notifications {dict(channels)}")
        account.undelivered += sum(1 for i in stored[ticket_id] if i not in delivered)
    hooks = Counter(r.headers.get("X-Parkdesk-Notification-Id") for r in webhook.requests)
    account.webhook_redeliveries = sum(n - 1 for n in hooks.values())
    return account


async def settle(
    settings: CommonSettings, accepted: set[str], webhook: WebhookReceiver, within: float
) -> Account:
    """Waits for the pipeline to finish every accepted ticket, then gives the account."""
    deadline = time.monotonic() + within
    while True:
        account = await account_for(settings, accepted, webhook)
        if account.clean or time.monotonic() > deadline:
            return account
        log.warning(
            "settling: %d accepted, %d not routed, %d clocks not done, %d notifications "
            "missing, %d undelivered",
            account.accepted,
            account.lost,
            account.clocks_wrong,
            account.notifications_missing,
            account.undelivered,
        )
        await asyncio.sleep(10)


@contextmanager
def the_suite(
    settings: CommonSettings, secret: str, load: Load, logs: Path
) -> Iterator[tuple[dict[str, ServiceProcess], WebhookReceiver]]:
    with WebhookReceiver() as webhook:
        env = {
            **environment(settings, secret),
            "PARKDESK_RESOLUTION_TARGET_SECONDS": str(load.sla_seconds),
            "PARKDESK_FIRST_RESPONSE_TARGET_SECONDS": str(load.sla_seconds / 3),
            "PARKDESK_WEBHOOK_URL": webhook.url,
            "PARKDESK_WEBHOOK_SECRET": secrets.token_hex(16),
            "PARKDESK_WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
            "PARKDESK_OUTBOX_SWEEP_SECONDS": "2",
            "PARKDESK_OUTBOX_SWEEP_GRACE_SECONDS": "10",
        }
        logs.mkdir(parents=True, exist_ok=True)
        with running_services(SERVICES, env, logs) as processes:
            yield processes, webhook


async def run_scenario(
    settings: CommonSettings,
    load: Load,
    faults: list[Fault],
    logs: Path,
    seed: int,
    prepare: Callable[[Run], None] = lambda _: None,
) -> tuple[Account, Run, Sent]:
    secret = secrets.token_hex(32)
    token = issue_credential(secret, Role.FRONTEND, "chaos-portal", timedelta(hours=4))
    sent = Sent()
    with the_suite(settings, secret, load, logs) as (processes, webhook):
        run = Run(settings, processes, webhook)
        prepare(run)
        window = load.tickets / load.per_second
        url = f"{processes['intake'].url}/v1/tickets"
        await asyncio.gather(
            generate(url, token, load, sent), inject(run, faults, window * 0.9, seed)
        )
        # Long enough for the backlog the faults built up: seconds, not a verdict on speed.
        patience = load.sla_seconds + max(600.0, load.tickets * 0.5)
        account = await settle(settings, set(sent.accepted), webhook, patience)
    return account, run, sent


async def on_the_local_broker(load: Load, logs: Path, seed: int) -> dict[str, Any]:
    """Every service killed in turn, the broker killed and restarted, the store stopped for a
    while: all on the project's local single-node infrastructure."""
    local = LocalInfrastructure()
    faults = [
        kill_service("intake"),
        store_outage(seconds=10),
        kill_service("routing"),
        restart_kafka,
        kill_service("sla"),
        kill_service("notify"),
    ]

    def wire(run: Run) -> None:
        run.restart_kafka = local.restart_kafka
        run.stop_store = local.stop_store
        run.start_store = local.start_store

    async with provisioned(CommonSettings(namespace="chaos" + secrets.token_hex(3))) as settings:
        account, run, sent = await run_scenario(settings, load, faults, logs / "local", seed, wire)
    return report("one broker, services and store killed", account, run, sent)


async def on_three_brokers(load: Load, logs: Path, seed: int, state: Path) -> dict[str, Any]:
    """A three-broker cluster (replication factor 3, min.insync.replicas 2) that loses one
    broker for good under load, with sla and notify killed as well."""
    cluster = KafkaCluster(state)
    await asyncio.to_thread(cluster.start)
    try:
        faults = [kill_service("sla"), kill_one_broker, kill_service("notify")]

        def wire(run: Run) -> None:
            run.kill_broker = lambda: cluster.kill(len(cluster.ports) - 1)

        settings = CommonSettings(
            namespace="chaos" + secrets.token_hex(3),
            kafka_bootstrap_servers=cluster.bootstrap_servers,
            topic_replication_factor=3,
        )
        async with provisioned(settings):
            account, run, sent = await run_scenario(
                settings, load, faults, logs / "cluster", seed, wire
            )
    finally:
        await asyncio.to_thread(cluster.stop)
    return report("three brokers, one lost for good", account, run, sent)


def report(name: str, account: Account, run: Run, sent: Sent) -> dict[str, Any]:
    return {
        "scenario": name,
        "faults": run.faults_done,
        "tickets_accepted": account.accepted,
        "requests_given_up": sent.given_up,
        "answers_503": sent.unavailable,
        "failed_attempts": sent.failed_attempts,
        "lost": account.lost,
        "clocks_wrong": account.clocks_wrong,
        "notifications_missing": account.notifications_missing,
        "notifications_duplicated": account.notifications_duplicated,
        "undelivered": account.undelivered,
        "republished_records": account.republished_records,
        "webhook_redeliveries": account.webhook_redeliveries,
        "clean": account.clean,
        "examples": account.examples,
    }
