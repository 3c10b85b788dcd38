from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient
from pymongo.errors import ServerSelectionTimeoutError

from shared.service import MAX_BODY_BYTES, create_app


@asynccontextmanager
async def nothing(_: FastAPI) -> AsyncIterator[None]:
    yield


def app() -> FastAPI:
    shell = create_app("unit", nothing, "a service shell")

    @shell.post("/echo")
    async def echo(request: Request) -> int:
        return len(await request.body())

    @shell.get("/store")
    async def store() -> None:
        raise ServerSelectionTimeoutError("no servers")

    return shell


def client() -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app()), base_url="http://test")


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
