"""The `parkdesk` command line, run as a real process against the running suite and broker."""

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.auth import Role
from shared.settings import CommonSettings
from tests.conftest import TopicWatcher
from tests.harness import ServiceProcess, running_services, ticket_body

pytestmark = pytest.mark.integration

PARKDESK = str(Path(sys.executable).parent / "parkdesk")


@pytest.fixture(scope="module")
def suite(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    logs = tmp_path_factory.mktemp("cli-service-logs")
    with running_services(["intake", "routing", "sla"], service_env, logs) as found:
        yield found


def parkdesk(
    env: dict[str, str], *args: str, token: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    extra = {"PARKDESK_TOKEN": token} if token else {}
    return subprocess.run(
        [PARKDESK, *args],
        env={**os.environ, **env, **extra, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def test_submit_follow_and_report(
    suite: dict[str, ServiceProcess],
    service_env: dict[str, str],
    settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
    tmp_path: Path,
) -> None:
    env = {
        **service_env,
        "PARKDESK_INTAKE_URL": suite["intake"].url,
        "PARKDESK_SLA_URL": suite["sla"].url,
    }
    watcher: TopicWatcher = await watch(settings.topics.sla)
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text(
        "\n".join(
            json.dumps(
                ticket_body(
                    f"税务登记 {n}", "变更税务登记需要哪些材料？", category="administrative"
                )
            )
            for n in range(3)
        )
    )

    submitted = parkdesk(
        env, "submit", "--file", str(tickets), token=bearer(credential(Role.FRONTEND, "cli"))
    )
    assert submitted.returncode == 0, submitted.stderr
    ticket_ids = re.findall(r"accepted (T-[0-9A-Z]{26})", submitted.stdout)
    assert len(ticket_ids) == 3

    followed = parkdesk(
        env, "follow", "tickets", "--from-beginning", "--limit", "100", "--idle-seconds", "5"
    )
    assert followed.returncode == 0, followed.stderr
    for ticket_id in ticket_ids:
        assert re.search(rf"ticket\.submitted {ticket_id}", followed.stdout)
    assert "li.na@example.com" not in followed.stdout

    await watcher.wait_for(
        lambda w: {e["ticket_id"] for e in w.events(settings.topics.sla)} >= set(ticket_ids),
        60,
        "the clocks of the three tickets",
    )
    reported = parkdesk(
        env, "report", "--json", token=bearer(credential(Role.SUPERVISOR, "cli-supervisor"))
    )
    assert reported.returncode == 0, reported.stderr
    figures = json.loads(reported.stdout)["departments"]
    assert sum(department["tickets"] for department in figures.values()) >= 3
    table = parkdesk(env, "report", token=bearer(credential(Role.SUPERVISOR, "cli-supervisor")))
    assert "resolution" in table.stdout
    refused = parkdesk(env, "report", token="not-a-credential")
    assert refused.returncode == 1
    assert "401" in refused.stderr


async def test_dead_letters_are_listed_shown_and_replayed(
    suite: dict[str, ServiceProcess],
    service_env: dict[str, str],
    settings: CommonSettings,
    watch: Callable[..., Any],
) -> None:
    topics = settings.topics
    watcher: TopicWatcher = await watch(topics.dead_letters, topics.tickets)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        poison = await producer.send_and_wait(
            topics.tickets, b"\x00cli poison", key=b"cli-poison", headers=[("origin", b"test")]
        )
    finally:
        await producer.stop()

    def dead_letters_of(offset: int) -> list[Any]:
        return [
            r
            for r in watcher.records
            if r.topic == topics.dead_letters
            and dict(r.headers).get("dlt-source-offset") == str(offset).encode()
            and dict(r.headers).get("dlt-source-partition") == str(poison.partition).encode()
            and dict(r.headers).get("dlt-service") == b"routing"
        ]

    await watcher.wait_for(lambda _: bool(dead_letters_of(poison.offset)), 90, "the dead letter")
    (letter,) = dead_letters_of(poison.offset)

    listed = parkdesk(service_env, "deadletters", "list", "--service", "routing")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"\b{letter.offset}\b.*routing.*not JSON", listed.stdout)
    shown = parkdesk(service_env, "deadletters", "show", str(letter.offset))
    assert shown.returncode == 0, shown.stderr
    assert "dlt-reason" in shown.stdout
    assert "origin: test" in shown.stdout

    replayed = parkdesk(service_env, "deadletters", "replay", str(letter.offset))
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 dead letter" in replayed.stdout

    def replays() -> list[Any]:
        return [
            r
            for r in watcher.records
            if r.topic == topics.tickets
            and dict(r.headers).get("dlt-replayed-from") == str(letter.offset).encode()
        ]

    await watcher.wait_for(lambda _: bool(replays()), 30, "the replayed record")
    (again,) = replays()
    assert again.value == b"\x00cli poison"
    assert again.key == b"cli-poison"
    assert dict(again.headers)["origin"] == b"test"
    assert not any(name.startswith("dlt-reason") for name, _ in again.headers)
    # Still poison: routing gives up on the replayed record too, and its partition moves on.
    await watcher.wait_for(lambda _: bool(dead_letters_of(again.offset)), 90, "a second letter")

    missing = parkdesk(service_env, "deadletters", "replay", "999999")
    assert missing.returncode == 1
    assert "no replayable dead letter" in missing.stderr


async def test_credentials_issued_work_and_revoked_stop_working(
    suite: dict[str, ServiceProcess], service_env: dict[str, str]
) -> None:
    issued = parkdesk(
        service_env, "credentials", "issue", "--role", "supervisor", "--subject", "cli-ops"
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    (credential_id,) = re.findall(r"credential ([0-9a-f]{32})", issued.stderr)
    report = f"{suite['sla'].url}/v1/reports"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(report, headers=headers)).status_code == 200

        revoked = parkdesk(service_env, "credentials", "revoke", credential_id)
        assert revoked.returncode == 0, revoked.stderr
        for _ in range(100):
            if (await http.get(report, headers=headers)).status_code == 401:
                break
            await asyncio.sleep(0.2)
        assert (await http.get(report, headers=headers)).status_code == 401


async def test_routing_retrain_and_model_from_the_command_line(
    suite: dict[str, ServiceProcess],
    service_env: dict[str, str],
    http: httpx.AsyncClient,
    credential: Callable[[Role, str], dict[str, str]],
) -> None:
    env = {**service_env, "PARKDESK_ROUTING_URL": suite["routing"].url}
    admin = bearer(credential(Role.ADMIN, "root"))
    before = parkdesk(env, "routing", "model", token=admin)
    assert before.returncode == 0, before.stderr
    if json.loads(before.stdout)["corrections_stored"] == json.loads(before.stdout)["corrections"]:
        idle = await asyncio.to_thread(parkdesk, env, "routing", "retrain", token=admin)
        assert idle.returncode == 0, idle.stderr
        assert "nothing new to learn" in idle.stdout
    # A department hands a ticket on: a correction, and then something to learn.
    intake = suite["intake"].url
    frontend = credential(Role.FRONTEND, "cli")
    answer = await http.post(
        f"{intake}/v1/tickets",
        json=ticket_body("停电", "园区B座从早上开始停电"),
        headers={**frontend, "Idempotency-Key": uuid.uuid4().hex},
    )
    ticket_id = answer.json()["ticket_id"]
    for _ in range(300):
        view = await http.get(f"{intake}/v1/tickets/{ticket_id}", headers=frontend)
        if view.status_code == 200 and view.json()["department"]:
            break
        await asyncio.sleep(0.1)
    department = view.json()["department"]
    moved = await http.post(
        f"{intake}/v1/tickets/{ticket_id}/transfer",
        json={
            "to_department": "park-property" if department != "park-property" else "tj-utilities",
            "reason": "the park's own building",
        },
        headers=credential(Role.DEPARTMENT, department),
    )
    assert moved.status_code == 202, moved.text
    for _ in range(300):
        waiting = json.loads(parkdesk(env, "routing", "model", token=admin).stdout)
        if waiting["corrections_stored"] > waiting["corrections"]:
            break
        await asyncio.sleep(0.1)

    retrained = await asyncio.to_thread(parkdesk, env, "routing", "retrain", token=admin)
    after = parkdesk(env, "routing", "model", token=admin)

    assert retrained.returncode == 0, retrained.stderr
    assert "accepted" in retrained.stdout
    assert json.loads(after.stdout)["version"] != json.loads(before.stdout)["version"]
    assert json.loads(after.stdout)["version"] in retrained.stdout
    refused = parkdesk(env, "routing", "retrain", token=bearer(credential(Role.SUPERVISOR, "s")))
    assert refused.returncode == 1
    assert "403" in refused.stderr
