"""The ticket lifecycle over HTTP against the four running services on real Kafka: every action,
the illegal ones, who may see and do what, and how the department topic, the SLA clock and the
notifications react."""

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from pymongo import AsyncMongoClient

from shared.auth import Role
from shared.settings import CommonSettings
from tests.conftest import TopicWatcher
from tests.harness import ServiceProcess, running_services, submit, ticket_body

pytestmark = pytest.mark.integration

T = TypeVar("T")
REOPEN_WINDOW_SECONDS = 3.0
Credential = Callable[[Role, str], dict[str, str]]


@pytest.fixture(scope="module")
def desk(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    env = {
        **service_env,
        # Long enough that no warning interferes; the SLA's own timing is tested elsewhere.
        "PARKDESK_RESOLUTION_TARGET_SECONDS": "600",
        "PARKDESK_FIRST_RESPONSE_TARGET_SECONDS": "300",
        "PARKDESK_REOPEN_WINDOW_SECONDS": str(REOPEN_WINDOW_SECONDS),
    }
    with running_services(
        ["intake", "routing", "sla", "notify"], env, tmp_path_factory.mktemp("lifecycle-logs")
    ) as found:
        yield found


class Client:
    def __init__(
        self, http: httpx.AsyncClient, intake: ServiceProcess, credential: Credential
    ) -> None:
        self.http = http
        self.intake = intake
        self.credential = credential

    async def open(self, enterprise: str, subject: str, description: str) -> str:
        answer = await submit(
            self.http,
            self.intake,
            self.credential(Role.ENTERPRISE, enterprise),
            ticket_body(subject, description, enterprise_id=enterprise),
        )
        assert answer.status_code == 202, answer.text
        ticket_id: str = answer.json()["ticket_id"]
        await self.until_department(ticket_id, enterprise)
        return ticket_id

    async def view(self, ticket_id: str, role: Role, subject: str) -> httpx.Response:
        return await self.http.get(
            f"{self.intake.url}/v1/tickets/{ticket_id}", headers=self.credential(role, subject)
        )

    async def act(
        self,
        ticket_id: str,
        action: str,
        role: Role,
        subject: str,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        return await self.http.post(
            f"{self.intake.url}/v1/tickets/{ticket_id}/{action}",
            json=body or {},
            headers=self.credential(role, subject),
        )

    async def until_department(self, ticket_id: str, enterprise: str) -> str:
        async def routed() -> str | None:
            view = (await self.view(ticket_id, Role.ENTERPRISE, enterprise)).json()
            department: str | None = view.get("department")
            return department

        return await until(routed, "the ticket routed", within=60)


async def until(probe: Callable[[], Awaitable[T | None]], what: str, within: float = 90) -> T:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
def client(
    desk: dict[str, ServiceProcess], http: httpx.AsyncClient, credential: Credential
) -> Client:
    return Client(http, desk["intake"], credential)


async def test_every_action_from_acknowledgement_to_rating_reaches_every_service(
    client: Client,
    settings: CommonSettings,
    watch: Callable[..., Any],
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    topics = settings.topics
    watcher: TopicWatcher = await watch(
        topics.sla, topics.department("tj-tax"), topics.department("tj-market")
    )
    ticket = await client.open("E-life", "增值税发票", "请问如何开具增值税专用发票？")
    tax, market = (Role.DEPARTMENT, "tj-tax"), (Role.DEPARTMENT, "tj-market")
    firm, portal = (Role.ENTERPRISE, "E-life"), (Role.FRONTEND, "park-portal")

    steps: list[tuple[str, tuple[Role, str], dict[str, Any], str]] = [
        ("acknowledge", tax, {}, "acknowledged"),
        ("comment", tax, {"comment": "正在核对您的开票信息"}, "in_progress"),
        (
            "comment",
            firm,
            {
                "comment": "附上营业执照",
                "attachments": [
                    {"name": "licence.pdf", "url": "https://files.example.com/licence.pdf"}
                ],
            },
            "in_progress",
        ),
        ("request-information", tax, {"question": "请提供纳税人识别号"}, "awaiting_enterprise"),
        ("provide-information", portal, {"answer": "91120116MA05XXXX"}, "in_progress"),
        ("transfer", tax, {"to_department": "tj-market", "reason": "涉及经营范围变更"}, "routed"),
        ("acknowledge", market, {}, "acknowledged"),
        ("resolve", market, {"resolution": "经营范围已变更，可以开票"}, "resolved"),
        ("close", firm, {"rating": 5, "comment": "很快，谢谢"}, "closed"),
    ]
    for action, (role, who), body, status in steps:
        answer = await client.act(ticket, action, role, who, body)
        assert answer.status_code == 202, (action, answer.text)
        assert answer.json()["status"] == status, action

    view = (await client.view(ticket, *firm)).json()
    assert view["status"] == "closed"
    assert view["rating"] == 5
    assert view["department"] == "tj-market"
    lifecycle = [h["type"] for h in view["history"] if h["type"].startswith("ticket.")]
    assert lifecycle == [
        "ticket.submitted",
        "ticket.routed",
        "ticket.acknowledged",
        "ticket.commented",
        "ticket.commented",
        "ticket.information_requested",
        "ticket.information_provided",
        "ticket.transferred",
        "ticket.acknowledged",
        "ticket.resolved",
        "ticket.closed",
    ]
    provided = next(h for h in view["history"] if h["type"] == "ticket.information_provided")
    assert provided["details"]["actor"] == {"role": "frontend", "id": "park-portal"}

    # Each department saw the steps taken while it had the ticket, on its own topic.
    await watcher.wait_for(
        lambda w: (
            "ticket.closed" in {e["type"] for e in w.events(topics.department("tj-market"), ticket)}
        ),
        90,
        "the closing on tj-market's topic",
    )
    assert [e["type"] for e in watcher.events(topics.department("tj-tax"), ticket)] == [
        "ticket.assigned",
        "ticket.acknowledged",
        "ticket.commented",
        "ticket.commented",
        "ticket.information_requested",
        "ticket.information_provided",
    ]
    market_events = watcher.events(topics.department("tj-market"), ticket)
    assert [e["type"] for e in market_events] == [
        "ticket.assigned",
        "ticket.acknowledged",
        "ticket.resolved",
        "ticket.closed",
    ]
    assert market_events[0]["transferred_from"] == "tj-tax"

    # The clock paused for the enterprise, resumed, and stopped in time; no first-response miss.
    await watcher.wait_for(
        lambda w: any(e["type"] == "sla.met" for e in w.events(topics.sla, ticket)), 90, "sla.met"
    )
    sla = watcher.events(topics.sla, ticket)
    assert [e["type"] for e in sla] == ["sla.started", "sla.paused", "sla.resumed", "sla.met"]
    assert sla[-1]["in_time"] is True
    assert sla[-1]["department"] == "tj-market"
    assert sla[2]["resolution_due_at"] > sla[0]["resolution_due_at"]

    # Notifications: the enterprise was asked and told; the new department heard of the transfer.
    notifications = mongo[f"{settings.namespace}_notify"]["notifications"]

    async def told() -> set[tuple[str, str]] | None:
        found = {
            (d["recipient"], d["trigger_type"])
            async for d in notifications.find({"ticket_id": ticket})
        }
        wanted = {
            ("enterprise:E-life", "ticket.information_requested"),
            ("enterprise:E-life", "ticket.resolved"),
            ("department:tj-market", "ticket.transferred"),
        }
        return found if wanted <= found else None

    await until(told, "the lifecycle notifications")

    # Every action is audited with actor, role and address, and no personal data.
    audit = [
        d async for d in mongo[f"{settings.namespace}_intake"]["audit"].find({"ticket_id": ticket})
    ]
    assert len(audit) == len(steps) + 1
    assert {(d["role"], d["actor"]) for d in audit} >= {
        ("department", "tj-tax"),
        ("frontend", "park-portal"),
    }
    assert all(d["source"] == "127.0.0.1" for d in audit)
    assert "li.na@example.com" not in str(audit)


async def test_illegal_actions_get_409_saying_the_state_and_what_is_allowed(
    client: Client, settings: CommonSettings, watch: Callable[..., Any]
) -> None:
    tax, firm = (Role.DEPARTMENT, "tj-tax"), (Role.ENTERPRISE, "E-strict")
    ticket = await client.open("E-strict", "发票", "发票丢了怎么办？")

    early = await client.act(ticket, "resolve", *tax, {"resolution": "x"})
    assert early.status_code == 409
    assert early.json()["detail"] == {
        "message": "cannot resolve a ticket that is routed; allowed now: acknowledge, comment, "
        "transfer",
        "status": "routed",
        "allowed": ["acknowledge", "comment", "transfer"],
    }
    wrong_side = await client.act(ticket, "acknowledge", *firm)
    assert wrong_side.status_code == 409
    to_supervision = await client.act(
        ticket, "transfer", *tax, {"to_department": "park-supervision", "reason": "x"}
    )
    assert to_supervision.status_code == 409
    assert "escalations" in to_supervision.json()["detail"]["message"]

    for action, who, body in (
        ("acknowledge", tax, {}),
        ("resolve", tax, {"resolution": "补开"}),
        ("close", firm, {"rating": 4}),
    ):
        assert (await client.act(ticket, action, *who, body)).status_code == 202

    resolve_closed = await client.act(ticket, "resolve", *tax, {"resolution": "again"})
    assert resolve_closed.status_code == 409
    assert resolve_closed.json()["detail"]["status"] == "closed"
    rate_twice = await client.act(ticket, "close", *firm, {"rating": 1})
    assert rate_twice.status_code == 409
    assert "cannot close a ticket that is closed" in rate_twice.json()["detail"]["message"]

    # Reopening: within the window a fresh clock starts; after it, refused.
    watcher: TopicWatcher = await watch(settings.topics.sla)
    second = await client.open("E-strict", "发票", "还是开不出发票")
    for action, who, body in (("acknowledge", tax, {}), ("resolve", tax, {"resolution": "好了"})):
        assert (await client.act(second, action, *who, body)).status_code == 202
    reopened = await client.act(second, "reopen", *firm, {"reason": "仍然报错"})
    assert reopened.status_code == 202
    assert reopened.json()["status"] == "in_progress"
    await watcher.wait_for(
        lambda w: (
            [e["type"] for e in w.events(settings.topics.sla, second)].count("sla.started") == 2
        ),
        90,
        "a fresh clock for the reopened ticket",
    )
    assert (await client.act(second, "resolve", *tax, {"resolution": "已修复"})).status_code == 202
    await asyncio.sleep(REOPEN_WINDOW_SECONDS + 0.5)
    late = await client.act(second, "reopen", *firm, {"reason": "又坏了"})
    assert late.status_code == 409
    assert "more than 3 seconds ago" in late.json()["detail"]["message"]


async def test_departments_and_enterprises_see_and_touch_only_their_own(
    client: Client, credential: Credential
) -> None:
    ticket = await client.open("E-mine", "发票", "专票怎么开？")
    tax, hrss = (Role.DEPARTMENT, "tj-tax"), (Role.DEPARTMENT, "bj-hrss")

    assert (await client.view(ticket, *tax)).status_code == 200
    assert (await client.view(ticket, *hrss)).status_code == 404
    assert (await client.act(ticket, "acknowledge", *hrss)).status_code == 404
    assert (await client.view(ticket, Role.ENTERPRISE, "E-yours")).status_code == 404
    assert (
        await client.act(ticket, "comment", Role.ENTERPRISE, "E-yours", {"comment": "hi"})
    ).status_code == 404
    assert (await client.act(ticket, "acknowledge", Role.SUPERVISOR, "ops")).status_code == 403
    assert (await client.view(ticket, Role.SUPERVISOR, "ops")).status_code == 200
    no_credential = await client.http.get(f"{client.intake.url}/v1/tickets/{ticket}")
    assert no_credential.status_code == 401

    # After a transfer the first department has no more access.
    assert (
        await client.act(
            ticket, "transfer", *tax, {"to_department": "tj-market", "reason": "not tax"}
        )
    ).status_code == 202
    assert (await client.view(ticket, *tax)).status_code == 404
    assert (await client.view(ticket, Role.DEPARTMENT, "tj-market")).status_code == 200


async def test_the_department_queue_filters_sorts_and_pages(
    client: Client, credential: Credential
) -> None:
    opened = [await client.open("E-queue", "排污许可", f"排污许可证问题 {n}") for n in range(3)]
    ecology = credential(Role.DEPARTMENT, "tj-ecology")
    queue = f"{client.intake.url}/v1/queue"

    async def all_listed() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (
            await client.http.get(queue, params={"limit": 100}, headers=ecology)
        ).json()["items"]
        return items if {i["ticket_id"] for i in items} >= set(opened) else None

    listed = await until(all_listed, "the queue to list the new tickets")
    dues = [item["resolution_due_at"] for item in listed]
    assert dues == sorted(dues)
    assert all(item["department"] == "tj-ecology" for item in listed)

    first = (await client.http.get(queue, params={"limit": 2}, headers=ecology)).json()
    second = (
        await client.http.get(
            queue, params={"limit": 2, "cursor": first["next_cursor"]}, headers=ecology
        )
    ).json()
    paged = [i["ticket_id"] for i in first["items"] + second["items"]]
    assert paged == [i["ticket_id"] for i in listed][: len(paged)]
    assert len(set(paged)) == len(paged)

    assert (
        await client.act(opened[0], "acknowledge", Role.DEPARTMENT, "tj-ecology")
    ).status_code == 202

    async def acknowledged_only() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (
            await client.http.get(queue, params={"status": "acknowledged"}, headers=ecology)
        ).json()["items"]
        return items if [i["ticket_id"] for i in items] == [opened[0]] else None

    await until(acknowledged_only, "the status filter")
    at_risk = (await client.http.get(queue, params={"at_risk": "true"}, headers=ecology)).json()
    assert at_risk["items"] == []
    other = await client.http.get(queue, params={"department": "tj-tax"}, headers=ecology)
    assert other.status_code == 404
    supervised = await client.http.get(
        queue, params={"department": "tj-ecology"}, headers=credential(Role.SUPERVISOR, "ops")
    )
    assert supervised.status_code == 200
    mine = (
        await client.http.get(
            f"{client.intake.url}/v1/tickets", headers=credential(Role.ENTERPRISE, "E-queue")
        )
    ).json()
    assert {i["ticket_id"] for i in mine["items"]} == set(opened)


async def test_a_retried_action_lands_once_and_a_reused_key_is_refused(client: Client) -> None:
    ticket = await client.open("E-retry", "发票", "发票抬头错了")
    tax = client.credential(Role.DEPARTMENT, "tj-tax")
    url = f"{client.intake.url}/v1/tickets/{ticket}/comment"

    async def comment(key: str, text: str) -> httpx.Response:
        return await client.http.post(
            url, json={"comment": text}, headers={**tax, "Idempotency-Key": key}
        )

    first, again = await comment("c-1", "已收到"), await comment("c-1", "已收到")
    changed = await comment("c-1", "改了内容")

    assert first.status_code == again.status_code == 202
    assert again.json()["event_id"] == first.json()["event_id"]
    assert changed.status_code == 409
    view = (await client.view(ticket, Role.ENTERPRISE, "E-retry")).json()
    assert [h["type"] for h in view["history"]].count("ticket.commented") == 1


async def test_two_actions_racing_on_one_ticket_cannot_both_land(client: Client) -> None:
    ticket = await client.open("E-race", "发票", "发票重复开具")

    answers = await asyncio.gather(
        *(client.act(ticket, "acknowledge", Role.DEPARTMENT, "tj-tax") for _ in range(5))
    )

    assert sorted(a.status_code for a in answers) == [202, 409, 409, 409, 409]
    view = (await client.view(ticket, Role.ENTERPRISE, "E-race")).json()
    assert [h["type"] for h in view["history"]].count("ticket.acknowledged") == 1


async def test_credentials_are_issued_listed_without_tokens_and_revoked_everywhere(
    desk: dict[str, ServiceProcess],
    http: httpx.AsyncClient,
    credential: Credential,
    service_env: dict[str, str],
) -> None:
    admin = credential(Role.ADMIN, "root")
    base = f"{desk['intake'].url}/v1/credentials"
    probes = {  # one authenticated route of each service
        "intake": f"{desk['intake'].url}/v1/queue",
        "notify": f"{desk['notify'].url}/v1/inbox",
        "sla": f"{desk['sla'].url}/v1/clocks/T-00000000000000000000000000",
        "routing": f"{desk['routing'].url}/v1/routing/policy",
    }

    async def answers(token: str) -> dict[str, int]:
        bearer = {"Authorization": f"Bearer {token}"}
        return {
            name: (await http.get(url, headers=bearer)).status_code for name, url in probes.items()
        }

    issued = await http.post(base, json={"role": "supervisor", "subject": "ops-7"}, headers=admin)
    assert issued.status_code == 201
    token, credential_id = issued.json()["token"], issued.json()["credential_id"]
    assert await answers(token) == {"intake": 200, "notify": 404, "sla": 404, "routing": 200}
    listed = (await http.get(base, headers=admin)).json()
    assert {
        "credential_id": credential_id,
        "role": "supervisor",
        "subject": "ops-7",
        "revoked": False,
    }.items() <= next(c for c in listed if c["credential_id"] == credential_id).items()
    assert token not in str(listed)
    assert (await http.get(base, headers=credential(Role.SUPERVISOR, "x"))).status_code == 403

    assert (await http.delete(f"{base}/{credential_id}", headers=admin)).status_code == 204

    async def refused_everywhere() -> bool:
        return set((await answers(token)).values()) == {401}

    await until(refused_everywhere, "every service to refuse the revoked credential")
    assert (await http.delete(f"{base}/{'0' * 32}", headers=admin)).status_code == 404

    # The command does the same, for operators without an admin credential yet.
    command = [sys.executable, "-m", "shared.admin"]
    env = {**os.environ, **service_env}
    made = await asyncio.to_thread(
        subprocess.run,
        [*command, "issue-credential", "--role", "supervisor", "--subject", "night-shift"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    cli_token = made.stdout.strip()
    cli_id = re.search(r"credential ([0-9a-f]{32})", made.stderr)
    assert cli_id is not None
    assert (await answers(cli_token))["routing"] == 200
    await asyncio.to_thread(
        subprocess.run,
        [*command, "revoke-credential", cli_id.group(1)],
        env=env,
        check=True,
        capture_output=True,
    )

    async def cli_refused() -> bool:
        return set((await answers(cli_token)).values()) == {401}

    await until(cli_refused, "every service to refuse the credential revoked by command")
