import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from shared.admin import provisioned
from shared.auth import Role, issue_credential
from shared.events import NotReadableYet, UndecodableEvent, decode_event
from shared.settings import CommonSettings
from tests.harness import Infra, environment, infrastructure

AUTH_SECRET = secrets.token_hex(32)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with infrastructure() as found:
        yield found


@pytest.fixture(scope="session")
async def settings(infra: Infra) -> AsyncIterator[CommonSettings]:
    """A namespace of topics and databases of this test run's own, removed afterwards."""
    namespace = "t" + secrets.token_hex(4)
    settings = CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_url=SecretStr(infra.mongodb_url),
        namespace=namespace,
    )
    async with provisioned(settings):
        yield settings


@pytest.fixture(scope="module")
async def module_settings(
    settings: CommonSettings, request: pytest.FixtureRequest
) -> AsyncIterator[CommonSettings]:
    """A namespace of one test module's own, for services that must start with nothing to
    catch up on: the run's shared namespace holds every earlier module's tickets and clocks."""
    suffix = hashlib.sha256(request.module.__name__.encode()).hexdigest()[:6]
    own = settings.model_copy(update={"namespace": f"{settings.namespace}m{suffix}"})
    async with provisioned(own):
        yield own


@pytest.fixture(scope="session")
def service_env(settings: CommonSettings) -> dict[str, str]:
    return environment(settings, AUTH_SECRET)


@pytest.fixture(scope="session")
def credential() -> Callable[[Role, str], dict[str, str]]:
    def headers(role: Role, subject: str) -> dict[str, str]:
        token = issue_credential(AUTH_SECRET, role, subject, timedelta(hours=1))
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture(scope="session")
async def mongo(infra: Infra) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    yield client
    await client.close()


class TopicWatcher:
    """A plain Kafka consumer (no group, from the start) that keeps every record it reads."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record in self._consumer:
            self.records.append(record)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()

    def events(
        self, topic: str | None = None, ticket_id: str | None = None
    ) -> list[dict[str, Any]]:
        found = []
        for record in self.records:
            if topic and record.topic != topic:
                continue
            # Poison and fuzz records from other tests share the topics: only events count.
            try:
                decode_event(record.value or b"")
            except (UndecodableEvent, NotReadableYet):
                continue
            event = json.loads(record.value or b"")
            if ticket_id is None or event["ticket_id"] == ticket_id:
                found.append(event)
        return found

    async def wait_for(
        self, predicate: Callable[["TopicWatcher"], bool], within: float, what: str
    ) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not predicate(self):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {within} s waiting for {what}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def watch(settings: CommonSettings) -> AsyncIterator[Callable[..., Any]]:
    watchers: list[TopicWatcher] = []

    async def start(*topics: str) -> TopicWatcher:
        watcher = TopicWatcher(settings.kafka_bootstrap_servers, list(topics))
        await watcher.start()
        watchers.append(watcher)
        return watcher

    yield start
    for watcher in watchers:
        await watcher.stop()


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    found = offsets.get(TopicPartition(topic, partition))
    return found.offset if found else -1


async def wait_committed_past(
    settings: CommonSettings,
    group: str,
    topic: str,
    partition: int,
    offset: int,
    within: float = 60,
) -> None:
    """Waits until the consumer group has committed beyond `offset`: it processed that record."""
    deadline = asyncio.get_running_loop().time() + within
    while (
        await committed_offset(settings.kafka_bootstrap_servers, group, topic, partition) <= offset
    ):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{group} did not get past {topic}[{partition}]@{offset}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
