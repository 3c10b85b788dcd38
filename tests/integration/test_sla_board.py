"""The live SLA board in a real browser: Debian's chromium, driven by Playwright, against sla
running as a process on real Kafka and FerretDB. Tickets are routed onto the tickets topic as
routing would; sla times them against a target of seconds, and the page must show each
standing change and each SLA event as it happens, without being reloaded."""

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from PIL import Image
from playwright.async_api import Browser, Page, async_playwright, expect

from services.intake.domain import new_ticket_id
from shared.auth import Role
from shared.settings import CommonSettings
from tests.conftest import TopicWatcher
from tests.harness import ServiceProcess, running_services
from tests.unit.samples import sample_routed

pytestmark = pytest.mark.integration

TARGET_SECONDS = 20.0
CHROMIUM = Path(os.environ.get("PARKDESK_CHROMIUM", "/usr/bin/chromium"))
# What the page paints a breached ticket's row with (`tr.breached td` in board.html).
BREACHED_RED = (0xC6, 0x28, 0x28)


@pytest.fixture(scope="module")
def sla(
    service_env: dict[str, str],
    module_settings: CommonSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    env = {
        **service_env,
        "PARKDESK_NAMESPACE": module_settings.namespace,
        "PARKDESK_RESOLUTION_TARGET_SECONDS": str(TARGET_SECONDS),
        "PARKDESK_FIRST_RESPONSE_TARGET_SECONDS": str(TARGET_SECONDS / 2),
    }
    logs = tmp_path_factory.mktemp("board-service-logs")
    with running_services(["sla"], env, logs) as found:
        yield found["sla"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.is_file(), f"no chromium at {CHROMIUM}: `make browser` installs it"  # noqa: ASYNC240
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            # The machine's network is closed: without these, chromium's own background
            # connections are refused by the dozen at every start.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield launched
        await launched.close()


async def route(settings: CommonSettings, department: str) -> str:
    """Puts a ticket.routed for a new ticket on the tickets topic, as routing would."""
    now = datetime.now(UTC)
    ticket_id = new_ticket_id(now)
    routed = sample_routed(now, ticket_id).model_copy(
        update={"event_id": uuid.uuid4(), "occurred_at": now, "department": department}
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topics.tickets, routed.to_json(), key=ticket_id.encode()
        )
    finally:
        await producer.stop()
    return ticket_id


async def republish(settings: CommonSettings, record: ConsumerRecord[bytes, bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
    finally:
        await producer.stop()


def reds(screenshot: Path) -> int:
    """How many pixels of the screenshot are the breached rows' red."""
    with Image.open(screenshot) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []

    found = 0
    for count, colour in colours:
        assert isinstance(colour, tuple)
        if all(abs(a - b) <= 6 for a, b in zip(colour, BREACHED_RED, strict=True)):
            found += count
    return found


async def sign_in(page: Page, url: str, headers: dict[str, str]) -> None:
    await page.goto(f"{url}/board")
    await page.fill("#token", headers["Authorization"].removeprefix("Bearer "))
    await page.click("button[type=submit]")
    await expect(page.locator("#status")).to_have_text("live", timeout=15_000)


async def test_the_board_shows_risk_breaches_rates_and_events_live_in_chromium(
    sla: ServiceProcess,
    browser: Browser,
    module_settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    watch: Callable[..., Any],
    tmp_path: Path,
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await sign_in(page, sla.url, credential(Role.SUPERVISOR, "park-supervision"))
    # Set once: were the page reloaded, this would be gone.
    await page.evaluate("window.notReloaded = true")

    watcher: TopicWatcher = await watch(module_settings.topics.sla)
    ticket_id = await route(module_settings, "tj-tax")
    feed = page.locator(f"#feed li[data-ticket='{ticket_id}']")
    await expect(feed.filter(has_text="sla.started")).to_have_count(1, timeout=15_000)

    # Past 75 % of its target, before its due time: at risk.
    at_risk = page.locator("#at-risk tbody tr.at-risk", has_text=ticket_id)
    await expect(at_risk).to_have_count(1, timeout=TARGET_SECONDS * 1000)
    await expect(feed.filter(has_text="sla.warning")).to_have_count(3, timeout=15_000)

    # Past its due time: breached, and no longer at risk.
    breached = page.locator("#breached tbody tr.breached", has_text=ticket_id)
    await expect(breached).to_have_count(1, timeout=TARGET_SECONDS * 1000)
    await expect(at_risk).to_have_count(0, timeout=10_000)
    await expect(feed.filter(has_text="sla.breached")).to_have_count(1, timeout=15_000)
    await expect(feed.filter(has_text="escalated to park-supervision")).to_have_count(1)

    # The same event published again (a producer retry, an sla restart) is shown once.
    (breach,) = [
        r
        for r in watcher.records
        if r.value is not None
        and json.loads(r.value).get("type") == "sla.breached"
        and json.loads(r.value)["ticket_id"] == ticket_id
    ]
    await republish(module_settings, breach)
    await asyncio.sleep(3)
    await expect(feed.filter(has_text="sla.breached")).to_have_count(1)

    rates = page.locator("#rates tbody tr")
    await expect(rates.filter(has_text="tj-tax")).to_have_count(1)
    await expect(rates.filter(has_text="overall")).to_have_count(1)
    tax_row = await rates.filter(has_text="tj-tax").locator("td").all_inner_texts()
    assert int(tax_row[7]) >= 1, tax_row  # the breached column counts it

    assert await page.evaluate("window.notReloaded === true")
    assert not errors, errors

    screenshot = tmp_path / "sla-board.png"
    await page.screenshot(path=str(screenshot))
    with Image.open(screenshot) as image:
        assert image.size == (1280, 900)
    # The breached row is painted: at least a row's worth of its red.
    assert reds(screenshot) > 2_000, "no breached row on the screenshot"


async def test_a_department_sees_only_its_own_tickets_and_events(
    sla: ServiceProcess,
    module_settings: CommonSettings,
    credential: Callable[[Role, str], dict[str, str]],
    http: httpx.AsyncClient,
) -> None:
    own = await route(module_settings, "bj-education")
    other = await route(module_settings, "tj-housing")
    education = credential(Role.DEPARTMENT, "bj-education")

    async def started_seen(headers: dict[str, str]) -> set[str]:
        """The tickets whose sla.started this viewer's event stream replays."""
        seen: set[str] = set()
        async with http.stream("GET", f"{sla.url}/v1/board/events", headers=headers) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            try:
                async with asyncio.timeout(2):
                    async for line in answer.aiter_lines():
                        if line.startswith("data: ") and '"sla.started"' in line:
                            seen.add(json.loads(line.removeprefix("data: "))["ticket_id"])
            except TimeoutError:
                pass
        return seen

    supervisor = credential(Role.SUPERVISOR, "park-supervision")
    for _ in range(30):
        if {own, other} <= await started_seen(supervisor):
            break
    assert {own, other} <= await started_seen(supervisor)
    seen = await started_seen(education)
    assert own in seen
    assert other not in seen

    board: dict[str, Any] = (await http.get(f"{sla.url}/v1/board", headers=education)).json()
    assert set(board["report"]["departments"]) == {"bj-education"}
    listed = {t["ticket_id"] for t in board["at_risk"] + board["breached"]}
    assert all(t["department"] == "bj-education" for t in board["at_risk"] + board["breached"])
    assert other not in listed

    assert (await http.get(f"{sla.url}/v1/board")).status_code == 401
    enterprise = credential(Role.ENTERPRISE, "E-acme")
    assert (await http.get(f"{sla.url}/v1/board", headers=enterprise)).status_code == 403
    page = await http.get(f"{sla.url}/board")
    assert page.status_code == 200
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
