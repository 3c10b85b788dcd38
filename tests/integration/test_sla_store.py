"""sla's version store against the real MongoDB-wire server: newest version wins, a stale
writer is told so, and a new owner rebuilds exactly the pending clocks of its partitions."""

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.sla.domain import Clock, SlaPolicy, Targets, acknowledge, resolve, start_clock
from services.sla.store import SlaStore, StaleClock
from tests.unit.samples import sample_routed

pytestmark = pytest.mark.integration

POLICY = SlaPolicy(Targets(timedelta(hours=24), timedelta(hours=2)))
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(mongo: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[SlaStore]:
    name = "sla_store_" + secrets.token_hex(4)
    yield SlaStore(mongo[name], POLICY.calendar)
    await mongo.drop_database(name)


def new_clock(n: int, partition: int) -> Clock:
    return start_clock(sample_routed(START, f"T-01M8M3WQ6WQ4ZQ3FGCHBD{n:05d}"), POLICY, partition)


async def test_the_newest_version_is_the_clock_and_a_stale_writer_is_refused(
    store: SlaStore,
) -> None:
    started = await store.start_once(new_clock(1, partition=2))
    again = await store.start_once(new_clock(1, partition=2))  # a redelivered ticket.routed
    acknowledged = await store.save(acknowledge(started, START + timedelta(minutes=5)))

    assert (started.version, again.version, acknowledged.version) == (1, 1, 2)
    newest = await store.clock(started.ticket_id)
    assert newest == acknowledged
    # An instance still holding version 1 (the old owner, mid-rebalance) cannot overwrite it.
    with pytest.raises(StaleClock):
        await store.save(resolve(started, START + timedelta(hours=1)))
    assert await store.clock(started.ticket_id) == acknowledged


async def test_a_batch_write_answers_what_the_store_holds_for_the_stale_ones(
    store: SlaStore,
) -> None:
    first, second = [await store.start_once(new_clock(n, partition=0)) for n in (1, 2)]
    newer = await store.save(acknowledge(second, START))  # written by someone else meanwhile

    saved = await store.save_all([first.with_fired("g1:warning-50"), second.with_fired("x")])

    assert saved[0].version == 2
    assert saved[0].fired == {"g1:warning-50"}
    assert saved[1] == newer


async def test_a_new_owner_reads_the_pending_clocks_of_its_partitions_only(
    store: SlaStore,
) -> None:
    for n in range(30):
        clock = await store.start_once(new_clock(n, partition=n % 3))
        if n % 5 == 0:
            await store.save(resolve(clock, START + timedelta(hours=1)))

    pending = await store.pending_clocks([0, 2])

    expected = {f"T-01M8M3WQ6WQ4ZQ3FGCHBD{n:05d}" for n in range(30) if n % 3 != 1 and n % 5}
    assert {sealed.ticket_id for sealed in pending} == expected
    for sealed in pending:
        clock = sealed.open()
        upcoming = clock.next_milestone()
        assert upcoming is not None
        assert (sealed.ticket_id, sealed.partition, sealed.due_at) == (
            clock.ticket_id,
            clock.partition,
            upcoming.due_at,
        )
        assert clock == await store.clock(clock.ticket_id)
    assert len(await store.started_between(START, START + timedelta(seconds=1))) == 30
    assert (
        await store.started_between(START + timedelta(seconds=1), START + timedelta(hours=1)) == []
    )
