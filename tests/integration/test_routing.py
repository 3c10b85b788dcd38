"""Routing against the running service on real Kafka: the labelled set end to end, explanations,
the dry run, policy hot reload and refusal, and transfers."""

import asyncio
import json
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.routing.domain import POLICY_FILE
from services.routing.evaluate import LABELLED_FILE, TARGET
from shared.auth import Role
from shared.events import Actor, ActorRole, Event, TicketTransferred
from shared.settings import CommonSettings
from tests.conftest import TopicWatcher
from tests.harness import ServiceProcess, running_services, submit, ticket_body

pytestmark = pytest.mark.integration


@dataclass
class Routing:
    intake: ServiceProcess
    routing: ServiceProcess
    policy_file: Path


@pytest.fixture(scope="module")
def running(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Routing]:
    logs = tmp_path_factory.mktemp("routing-logs")
    policy_file = tmp_path_factory.mktemp("policy") / "policy.toml"
    shutil.copy(POLICY_FILE, policy_file)
    env = {
        **service_env,
        "PARKDESK_POLICY_FILE": str(policy_file),
        "PARKDESK_POLICY_CHECK_SECONDS": "0.2",
    }
    with running_services(["intake", "routing"], env, logs) as found:
        yield Routing(found["intake"], found["routing"], policy_file)


async def test_the_labelled_set_is_routed_as_labelled_through_the_pipeline(
    running: Routing,
    http: httpx.AsyncClient,
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
) -> None:
    watcher: TopicWatcher = await watch(settings.topics.tickets)
    frontend = credential(Role.FRONTEND, "park-portal")
    labelled = [json.loads(line) for line in LABELLED_FILE.read_text().splitlines() if line]
    expected: dict[str, str] = {}
    for row in labelled:
        answer = await submit(
            http,
            running.intake,
            frontend,
            ticket_body(
                row["subject"],
                row["description"],
                origin=row["origin"],
                zhongguancun_certified=row["zhongguancun_certified"],
                category=row["category"],
            ),
        )
        assert answer.status_code == 202, answer.text
        expected[answer.json()["ticket_id"]] = row["expected"]

    def routed() -> dict[str, dict[str, Any]]:
        return {
            e["ticket_id"]: e
            for e in watcher.events(settings.topics.tickets)
            if e["type"] == "ticket.routed" and e["ticket_id"] in expected
        }

    await watcher.wait_for(
        lambda _: len(routed()) == len(expected), 60, "every labelled ticket routed"
    )
    decisions = routed()
    right = sum(decisions[t]["department"] == department for t, department in expected.items())
    accuracy = right / len(expected)
    misses = Counter(
        (department, decisions[t]["department"])
        for t, department in expected.items()
        if decisions[t]["department"] != department
    )
    assert len(expected) >= 200
    assert set(expected.values()) >= {
        "bj-education",
        "tj-education",
        "bj-hrss",
        "tj-hrss",
        "zgc-admin",
        "tj-tax",
        "park-investment",
        "tj-market",
    }
    assert accuracy >= TARGET, f"accuracy {accuracy:.1%}; confusions {misses.most_common()}"
    # Every decision explains itself.
    for event in decisions.values():
        assert event["rule_id"]
        assert event["matched_terms"]
        assert event["policy_version"]
    assert any(event["runner_up"] for event in decisions.values())


async def test_dry_run_explains_without_creating_anything(
    running: Routing,
    http: httpx.AsyncClient,
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
) -> None:
    url = f"{running.routing.url}/v1/routing/dry-run"
    marker = uuid.uuid4().hex
    body = ticket_body("参加天津社保", f"员工放弃北京社保，改为参加天津社保。{marker}")
    watcher: TopicWatcher = await watch(settings.topics.tickets)

    answer = await http.post(url, json=body, headers=credential(Role.SUPERVISOR, "ops"))

    assert answer.status_code == 200
    explained = answer.json()
    assert explained["department"] == "tj-hrss"
    assert explained["rule_id"] == "tj-hrss.join-tianjin"
    assert "参加天津社保" in explained["matched_terms"]
    assert explained["runner_up"]["department"] == "bj-hrss"
    assert (await http.post(url, json=body)).status_code == 401
    forbidden = await http.post(url, json=body, headers=credential(Role.ENTERPRISE, "E-1"))
    assert forbidden.status_code == 403
    await asyncio.sleep(1)
    assert not [r for r in watcher.records if marker.encode() in (r.value or b"")]


async def test_a_new_policy_loads_without_restart_and_a_bad_one_is_refused(
    running: Routing, http: httpx.AsyncClient, credential: Callable[[Role, str], dict[str, str]]
) -> None:
    admin = credential(Role.ADMIN, "root")
    base = f"{running.routing.url}/v1/routing"
    coffee = ticket_body("咖啡机", "茶水间的咖啡机坏了")

    async def decide() -> dict[str, Any]:
        answer = await http.post(f"{base}/dry-run", json=coffee, headers=admin)
        result: dict[str, Any] = answer.json()
        return result

    assert (await decide())["department"] == "park-service"
    original = running.policy_file.read_text()
    try:
        # An edited file is picked up by the watcher, no request needed.
        running.policy_file.write_text(
            original.replace('version = "', 'version = "hot-', 1)
            + '\n[[rule]]\nid = "coffee"\ndepartment = "park-property"\npriority = 70\n'
            'any = ["咖啡机"]\n'
        )
        for _ in range(50):
            if (await decide())["department"] == "park-property":
                break
            await asyncio.sleep(0.1)
        decided = await decide()
        assert decided["department"] == "park-property"
        assert decided["policy_version"].startswith("hot-")

        # A bad policy is refused, by name, and the one in force stays.
        running.policy_file.write_text(
            original + '\n[[rule]]\nid = "broken"\ndepartment = "tj-nowhere"\nany = ["x"]\n'
        )
        refused = await http.post(f"{base}/policy/reload", headers=admin)
        assert refused.status_code == 422
        assert str(running.policy_file) in refused.json()["detail"]
        assert "'broken'" in refused.json()["detail"]
        assert (await decide())["department"] == "park-property"
        status = (await http.get(f"{base}/policy", headers=admin)).json()
        assert status["version"].startswith("hot-")
        assert "tj-nowhere" in status["last_error"]
        enterprise = credential(Role.ENTERPRISE, "E-1")
        assert (await http.post(f"{base}/policy/reload", headers=enterprise)).status_code == 403
    finally:
        running.policy_file.write_text(original)
        reloaded = await http.post(f"{base}/policy/reload", headers=admin)
        assert reloaded.status_code == 200


async def test_transfers_move_the_ticket_refuse_bad_targets_and_are_counted(
    running: Routing,
    http: httpx.AsyncClient,
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
) -> None:
    topics = settings.topics
    watcher: TopicWatcher = await watch(topics.tickets, topics.department("tj-market"))
    answer = await submit(
        http,
        running.intake,
        credential(Role.FRONTEND, "p"),
        ticket_body("税务迁移", "公司从北京迁到天津，税务关系怎么迁移？"),
    )
    ticket_id = answer.json()["ticket_id"]
    await watcher.wait_for(
        lambda w: any(e["type"] == "ticket.routed" for e in w.events(topics.tickets, ticket_id)),
        90,
        "the ticket routed",
    )
    routed = next(
        e for e in watcher.events(topics.tickets, ticket_id) if e["type"] == "ticket.routed"
    )
    assert routed["department"] == "tj-tax"
    before = (
        await http.get(
            f"{running.routing.url}/v1/routing/transfers",
            headers=credential(Role.SUPERVISOR, "ops"),
        )
    ).json()

    def transfer(from_department: str, to_department: str) -> TicketTransferred:
        return TicketTransferred(
            ticket_id=ticket_id,
            correlation_id=routed["correlation_id"],
            from_department=from_department,
            to_department=to_department,
            reason="registration, not tax",
            actor=Actor(role=ActorRole.DEPARTMENT, id=from_department),
            department=from_department,
        )

    accepted = transfer("tj-tax", "tj-market")
    to_supervision = transfer("tj-market", "park-supervision")
    to_itself = transfer("tj-market", "tj-market")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        # The accepted one twice: a redelivery must not count or move twice.
        for event in (accepted, accepted, to_supervision, to_itself):
            await producer.send_and_wait(topics.tickets, event.to_json(), key=ticket_id.encode())
    finally:
        await producer.stop()

    def refusals() -> list[dict[str, Any]]:
        return [
            e
            for e in watcher.events(topics.tickets, ticket_id)
            if e["type"] == "ticket.transfer_refused"
        ]

    await watcher.wait_for(
        lambda _: len({e["event_id"] for e in refusals()}) == 2, 90, "both bad transfers refused"
    )
    assigned = watcher.events(topics.department("tj-market"), ticket_id)
    assert {e["event_id"] for e in assigned} == {
        str(Event.derived_id(accepted.event_id, "assigned", "tj-market"))
    }
    assert assigned[0]["transferred_from"] == "tj-tax"
    assert assigned[0]["ticket"]["subject"] == "税务迁移"
    reasons = {e["requested_department"]: e for e in refusals()}
    assert "escalations" in reasons["park-supervision"]["reason"]
    assert "already" in reasons["tj-market"]["reason"]
    assert reasons["tj-market"]["department"] == "tj-market"
    after = (
        await http.get(
            f"{running.routing.url}/v1/routing/transfers",
            headers=credential(Role.SUPERVISOR, "ops"),
        )
    ).json()
    assert after.get("tj-tax.tax", 0) == before.get("tj-tax.tax", 0) + 1
