"""intake's store against the real MongoDB-wire server: a learned event is kept once and hands
back the ticket's whole story, and the read model is written only when it changes."""

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.intake.domain import fold
from services.intake.store import IntakeStore, Recorded
from shared.events import TicketSubmitted
from tests.unit.samples import sample_breached, sample_routed, sample_submitted

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def database(mongo: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[Any]:
    name = "intake_store_" + secrets.token_hex(4)
    yield mongo[name]
    await mongo.drop_database(name)


async def submitted_ticket(store: IntakeStore) -> TicketSubmitted:
    submitted = sample_submitted(NOW, "learn-1")
    assert await store.record(submitted, 1, recorded_at=NOW) is Recorded.STORED
    return submitted


async def test_a_learned_event_is_kept_once_and_returns_the_whole_story(database: Any) -> None:
    store = IntakeStore(database)
    await store.ensure_indexes()
    submitted = await submitted_ticket(store)
    routed = sample_routed(NOW, submitted.ticket_id)

    first = await store.learn(routed)
    redelivered = await store.learn(routed)

    assert [e.event_id for e in first] == [submitted.event_id, routed.event_id]
    assert redelivered == first
    assert await store.ticket_events(submitted.ticket_id) == first
    assert await database["learned"].count_documents({}) == 1


async def test_the_view_is_written_only_when_it_changes(database: Any) -> None:
    store = IntakeStore(database)
    await store.ensure_indexes()
    submitted = await submitted_ticket(store)
    story = await store.learn(sample_routed(NOW, submitted.ticket_id))
    state = fold(story)
    assert state is not None

    await store.save_view(state, NOW)
    await store.save_view(state, NOW + timedelta(minutes=1))  # the same view: not written
    view = await database["tickets"].find_one({"_id": submitted.ticket_id})
    assert (view["department"], view["breached"], view["updated_at"]) == ("tj-tax", False, NOW)

    breached = sample_breached(NOW, 120.0, ticket=submitted.ticket_id)
    changed = fold(await store.learn(breached))
    assert changed is not None
    await store.save_view(changed, NOW + timedelta(minutes=2))
    view = await database["tickets"].find_one({"_id": submitted.ticket_id})
    assert (view["breached"], view["updated_at"]) == (True, NOW + timedelta(minutes=2))
