import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from pymongo.errors import ServerSelectionTimeoutError

from shared.service import MAX_BODY_BYTES, READY_TIMEOUT_SECONDS, Check, create_app
from shared.settings import ServiceSettings

SETTINGS = ServiceSettings(auth_secret=SecretStr("k" * 32))


@asynccontextmanager
async def nothing(_: FastAPI) -> AsyncIterator[None]:
    yield


async def passes() -> bool:
    return True


def app(settings: ServiceSettings = SETTINGS, checks: Mapping[str, Check] | None = None) -> FastAPI:
    shell = create_app(settings, "unit", "a service shell", nothing, checks or {"all": passes})

    @shell.post("/echo")
    async def echo(request: Request) -> int:
        return len(await request.body())

    @shell.get("/store")
    async def store() -> None:
        raise ServerSelectionTimeoutError("no servers")

    return shell


def client(shell: FastAPI | None = None) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(shell or app()), base_url="http://test")


async def test_bodies_up_to_the_limit_pass() -> None:
    async with client() as http:
        answer = await http.post("/echo", content=b"x" * MAX_BODY_BYTES)

    assert answer.status_code == 200
    assert answer.json() == MAX_BODY_BYTES


async def test_a_declared_oversized_body_is_refused_with_413() -> None:
    async with client() as http:
        answer = await http.post("/echo", content=b"x" * (MAX_BODY_BYTES + 1))

    assert answer.status_code == 413


async def test_an_undeclared_oversized_body_is_refused_while_streaming() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"x" * 1024

    async with client() as http:
        answer = await http.post("/echo", content=chunks())

    assert answer.status_code == 413


async def test_an_unreachable_store_answers_503_with_retry_after() -> None:
    async with client() as http:
        answer = await http.get("/store")

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"


async def test_health_needs_no_credential_and_tells_nothing_private() -> None:
    async with client() as http:
        answer = await http.get("/health")

    assert answer.json() == {"status": "ok", "service": "unit"}


async def test_ready_when_every_check_passes() -> None:
    async with client() as http:
        answer = await http.get("/ready")

    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {"all": True}}


async def test_not_ready_names_the_failed_checks_a_raising_and_a_hanging_one_included() -> None:
    async def fails() -> bool:
        return False

    async def raises() -> bool:
        raise ServerSelectionTimeoutError("no servers")

    async def hangs() -> bool:
        await asyncio.sleep(READY_TIMEOUT_SECONDS * 10)
        return True

    checks = {"broker": passes, "group": fails, "store": raises, "slow": hangs}
    async with client(app(checks=checks)) as http:
        answer = await http.get("/ready")

    assert answer.status_code == 503
    assert answer.json()["checks"] == {
        "broker": True,
        "group": False,
        "store": False,
        "slow": False,
    }


async def test_metrics_count_requests_under_their_route_template() -> None:
    shell = app()

    @shell.get("/things/{thing_id}")
    async def thing(thing_id: str) -> str:
        return thing_id

    async with client(shell) as http:
        for thing_id in ("a", "b", "c"):
            await http.get(f"/things/{thing_id}")
        await http.get("/no/such/path")
        exposition = (await http.get("/metrics")).text

    assert (
        'parkdesk_http_requests_total{method="GET",route="/things/{thing_id}",status="200"}'
        in exposition
    )
    assert 'route="/no/such/path"' not in exposition
    assert 'route="unmatched",status="404"' in exposition
    assert "/things/a" not in exposition


async def test_metrics_need_the_scrape_token_when_one_is_set() -> None:
    token = "scrape-token-0123456789"
    guarded = SETTINGS.model_copy(update={"metrics_token": SecretStr(token)})
    async with client(app(guarded)) as http:
        anonymous = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        scraper = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert scraper.status_code == 200
    assert "parkdesk_http_requests_total" in scraper.text
