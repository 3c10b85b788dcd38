"""SLA clocks at scale: memory per clock, rebuild time, and fire lateness.

1. In memory: one million stored clocks adopted and scheduled, as a rebuild does after reading
   them, with no store involved: seconds, and bytes per clock (tracemalloc) before and after it
   is opened (decoded), as each is when it first fires or changes.
2. From the store: one million open clocks written to the local MongoDB-wire store (FerretDB),
   then rebuilt by a new owner of all partitions through sla's own assignment handler: read and
   scheduled. Its wall time is the rebuild figure.
3. Lateness: 10,000 clocks due in the same second, fired through the real path (publish to
   Kafka with acks=all, then store the fired clocks), each timed from its due time to the moment
   its fire is published and stored.
"""

import argparse
import asyncio
import json
import secrets
import statistics
import time
import tracemalloc
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from services.sla.domain import Clock, SlaPolicy, Targets, start_clock
from services.sla.handlers import ClockOwnership, EventHandlers, Firing, stage_firing
from services.sla.store import SealedClock, SlaStore, document_of
from services.sla.timers import ClockScheduler, Due
from shared.admin import provisioned
from shared.events import Category, Priority, TicketRouted
from shared.kafka import make_broker
from shared.mongo import connect
from shared.settings import CommonSettings

RESULTS = Path(__file__).with_name("results")
POLICY = SlaPolicy(Targets(timedelta(hours=24), timedelta(hours=2)))
PARTITIONS = 6
WRITE_BATCH = 5000


def clock(n: int, start: datetime, policy: SlaPolicy = POLICY) -> Clock:
    routed = TicketRouted(
        ticket_id=f"T-{n:026d}",
        correlation_id="bench",
        department="tj-tax",
        reason="bench",
        category=Category.DAILY_LIFE,
        priority=Priority.NORMAL,
        submitted_at=start,
        resolution_due_at=start + timedelta(hours=24),
    )
    return start_clock(routed, policy, partition=n % PARTITIONS)


def in_memory(count: int, memory_sample: int = 100_000) -> dict[str, float]:
    """A rebuild without the store: stored documents adopted as sealed clocks, then a sample
    opened (decoded), as each is when it first fires or changes."""
    start = datetime.now(UTC)
    documents = [document_of(clock(n, start).next_version()) for n in range(count)]

    def rebuild(found: list[dict[str, Any]]) -> ClockScheduler[Due]:
        scheduler = ClockScheduler(Due, never, lambda: start)
        scheduler.adopt(
            SealedClock(document, n % PARTITIONS, POLICY.calendar)
            for n, document in enumerate(found)
        )
        return scheduler

    began = time.perf_counter()
    scheduler = rebuild(documents)
    seconds = time.perf_counter() - began
    assert len(scheduler) == count
    del scheduler
    # Measured apart: tracing every allocation slows the rebuild many times over.
    sample = documents[:memory_sample]
    tracemalloc.start()
    kept = rebuild(sample)
    sealed, _ = tracemalloc.get_traced_memory()
    for document in sample:
        kept.get(document["ticket_id"])
    opened, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = rebuild(sample)
    began = time.perf_counter()
    for document in sample:
        kept.get(document["ticket_id"])
    opening = time.perf_counter() - began
    return {
        "clocks": count,
        "rebuild_seconds": round(seconds, 2),
        "bytes_per_sealed_clock": round(sealed / len(sample)),
        "bytes_per_opened_clock": round(opened / len(sample)),
        "microseconds_to_open_one": round(opening / len(sample) * 1e6, 1),
    }


async def never(_: list[Due]) -> list[Clock]:
    raise AssertionError("nothing is due")


async def from_store(settings: CommonSettings, count: int) -> dict[str, float]:
    client, database = connect(settings, "sla")
    store = SlaStore(database, POLICY.calendar)
    try:
        start = datetime.now(UTC)
        began = time.perf_counter()
        for first in range(0, count, WRITE_BATCH):
            batch = range(first, min(count, first + WRITE_BATCH))
            await store.save_all([clock(n, start) for n in batch])
        written = time.perf_counter() - began
        scheduler = ClockScheduler(Due, never, lambda: start)
        ownership = ClockOwnership(store, scheduler, settings.topics.tickets)
        began = time.perf_counter()
        await ownership.on_partitions_assigned(
            {TopicPartition(settings.topics.tickets, p) for p in range(PARTITIONS)}
        )
        seconds = time.perf_counter() - began
        assert len(scheduler) == count
        return {
            "clocks": count,
            "write_seconds": round(written, 2),
            "rebuild_seconds": round(seconds, 2),
            "clocks_per_second": round(count / seconds),
        }
    finally:
        await client.drop_database(settings.database_name("sla"))
        await client.close()


async def lateness(settings: CommonSettings, count: int, held: int) -> dict[str, float]:
    client, database = connect(settings, "sla")
    store = SlaStore(database, POLICY.calendar)
    broker = make_broker(settings, "sla-bench")
    await broker.start()
    fired_at: dict[str, float] = {}
    all_fired = asyncio.Event()
    try:
        handlers = EventHandlers(store, broker, settings.topics, POLICY, lambda: datetime.now(UTC))
        real_fire = handlers.on_milestones_due

        async def timed_fire(fired: list[Firing]) -> list[Clock]:
            result = await real_fire(fired)
            now = time.time()
            for each in fired:
                fired_at[each.clock.ticket_id] = now
            if len(fired_at) == count:
                all_fired.set()
            return result

        scheduler = ClockScheduler(stage_firing, timed_fire, lambda: datetime.now(UTC))
        # The others an instance holds meanwhile, due hours later: the fires must not slow
        # down with the size of what is held.
        later = (clock(n, datetime.now(UTC)).next_version() for n in range(count, held))
        scheduler.adopt(
            SealedClock(document_of(each), each.partition, POLICY.calendar) for each in later
        )
        due = datetime.now(UTC) + timedelta(seconds=5)
        # First response due at the same second for every clock: started 2 h before it.
        clocks: list[Clock] = []
        for first in range(0, count, WRITE_BATCH):
            batch = range(first, min(count, first + WRITE_BATCH))
            clocks += await store.save_all([clock(n, due - timedelta(hours=2)) for n in batch])
        for each in clocks:
            scheduler.add(each)
        running = asyncio.create_task(scheduler.run())
        with suppress(TimeoutError):
            await asyncio.wait_for(all_fired.wait(), 600)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        late = sorted(at - due.timestamp() for at in fired_at.values())
        return {
            "clocks": count,
            "held": held,
            "fired": len(late),
            "lateness_p50_seconds": round(statistics.median(late), 3),
            "lateness_p99_seconds": round(late[int(len(late) * 0.99) - 1], 3),
            "lateness_max_seconds": round(late[-1], 3),
        }
    finally:
        await broker.stop()
        await client.drop_database(settings.database_name("sla"))
        await client.close()


async def with_namespace(work: Any) -> Any:
    async with provisioned(CommonSettings(namespace="bench" + secrets.token_hex(3))) as settings:
        return await work(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clocks", type=int, default=1_000_000)
    parser.add_argument("--store-clocks", type=int, default=1_000_000)
    parser.add_argument("--due-together", type=int, default=10_000)
    args = parser.parse_args()
    memory = in_memory(args.clocks)
    store = asyncio.run(with_namespace(lambda s: from_store(s, args.store_clocks)))
    late = asyncio.run(with_namespace(lambda s: lateness(s, args.due_together, args.clocks)))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "sla.json"
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "in_memory": memory,
                "from_store": store,
                "lateness": late,
            },
            indent=2,
        )
    )
    print(
        f"in memory: {memory['clocks']:,} stored clocks adopted (scheduled, still sealed) in "
        f"{memory['rebuild_seconds']} s, {memory['bytes_per_sealed_clock']} bytes per sealed "
        f"clock, {memory['bytes_per_opened_clock']} once opened, "
        f"{memory['microseconds_to_open_one']} µs to open one (target: rebuild under 30 s)"
    )
    print(
        f"from the store (FerretDB): {store['clocks']:,} clocks written in "
        f"{store['write_seconds']} s, rebuilt (read and scheduled) in "
        f"{store['rebuild_seconds']} s = {store['clocks_per_second']:,}/s "
        "(target: rebuild under 30 s)"
    )
    print(
        f"lateness, {late['clocks']:,} clocks due in one second among "
        f"{late['held']:,} held: p50 "
        f"{late['lateness_p50_seconds']} s, p99 {late['lateness_p99_seconds']} s, max "
        f"{late['lateness_max_seconds']} s (target p99 under 1 s); {late['fired']} fired"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
