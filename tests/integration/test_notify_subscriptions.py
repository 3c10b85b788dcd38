"""A department's own webhook, registered by an administrator through notify's API on the
running suite: deliveries go to it, signed with its secret, and the secret is never readable
again, through the API or in the store."""

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from shared.auth import Role
from shared.settings import CommonSettings
from tests.harness import ServiceProcess, WebhookReceiver, running_services, submit, ticket_body

pytestmark = pytest.mark.integration

Credential = Callable[[Role, str], dict[str, str]]
SECRET = "education-bureau-hook-secret"


@pytest.fixture(scope="module")
def desk(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    # No shared webhook: only a department that registered its own gets webhooks.
    with running_services(
        ["intake", "routing", "notify"], service_env, tmp_path_factory.mktemp("subscription-logs")
    ) as found:
        yield found


async def register_and_submit(
    http: httpx.AsyncClient,
    desk: dict[str, ServiceProcess],
    credential: Credential,
    mongo: AsyncMongoClient[dict[str, Any]],
    settings: CommonSettings,
    url: str,
    hook: WebhookReceiver,
) -> list[Any]:
    """Registers the department's webhook, checks the secret stays sealed, opens a ticket
    for the department, and returns the webhook requests about it."""
    admin = credential(Role.ADMIN, "ops")
    body = {"channels": ["inbox", "webhook"], "webhook_url": hook.url, "webhook_secret": SECRET}
    registered = await http.put(url, json=body, headers=admin)
    assert registered.status_code == 200, registered.text
    assert registered.json() == {
        "recipient": "department:bj-education",
        "channels": ["inbox", "webhook"],
        "webhook_url": hook.url,
        "webhook_secret_set": True,
    }
    assert SECRET not in (await http.get(url, headers=admin)).text
    stored = await mongo[f"{settings.namespace}_notify"]["subscriptions"].find_one()
    assert stored is not None
    assert SECRET not in str(stored)

    answer = await submit(
        http,
        desk["intake"],
        credential(Role.FRONTEND, "park-portal"),
        ticket_body(
            "孩子学籍问题",
            "我们公司从北京搬到天津，员工孩子的北京学籍 (student registration) 如何保留？",
        ),
    )
    ticket_id = answer.json()["ticket_id"]
    for _ in range(900):  # a fresh suite may first wait for its consumer groups
        mine = [r for r in hook.requests if r.json()["ticket_id"] == ticket_id]
        if mine:
            break
        await asyncio.sleep(0.1)
    return mine


async def test_a_department_gets_webhooks_at_its_own_url_signed_with_its_own_secret(
    desk: dict[str, ServiceProcess],
    http: httpx.AsyncClient,
    credential: Credential,
    mongo: AsyncMongoClient[dict[str, Any]],
    settings: CommonSettings,
) -> None:
    admin = credential(Role.ADMIN, "ops")
    url = f"{desk['notify'].url}/v1/subscriptions/department:bj-education"
    with WebhookReceiver() as hook:
        try:
            mine = await register_and_submit(http, desk, credential, mongo, settings, url, hook)
        finally:
            # The namespace's other suites share notify's store: leave the department as found.
            await http.delete(url, headers=admin)

    [request] = mine
    assert request.json()["recipient"] == "department:bj-education"
    timestamp = request.headers["X-Parkdesk-Timestamp"]
    signed = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["X-Parkdesk-Signature"] == f"sha256={signed.hexdigest()}"


async def test_subscriptions_are_for_administrators_and_must_make_sense(
    desk: dict[str, ServiceProcess], http: httpx.AsyncClient, credential: Credential
) -> None:
    base = f"{desk['notify'].url}/v1/subscriptions"
    admin = credential(Role.ADMIN, "ops")
    body = {"channels": ["inbox", "email"]}

    department = credential(Role.DEPARTMENT, "tj-tax")
    assert (
        await http.put(f"{base}/enterprise:E-1", json=body, headers=department)
    ).status_code == 403
    assert (await http.put(f"{base}/enterprise:E-1", json=body)).status_code == 401
    assert (await http.put(f"{base}/enterprise:E-1", json=body, headers=admin)).status_code == 200

    refused = [
        ("department:tj-tax", {"channels": ["email"]}),  # not a department's channel
        ("department:tj-tax", {"channels": ["webhook"]}),  # a webhook without its URL
        ("department:no-such", {"channels": ["inbox"]}),
        ("enterprise:E-1", {"channels": ["inbox"], "webhook_url": "http://127.0.0.1:9/x"}),
        ("enterprise:E-1", {"channels": ["inbox"], "colour": "blue"}),
        ("someone:else", {"channels": ["inbox"]}),
    ]
    for recipient, wrong in refused:
        answer = await http.put(f"{base}/{recipient}", json=wrong, headers=admin)
        assert answer.status_code == 422, (recipient, wrong, answer.text)

    assert (await http.delete(f"{base}/enterprise:E-1", headers=admin)).status_code == 204
    assert (await http.get(f"{base}/enterprise:E-1", headers=admin)).status_code == 404
