"""SLA clocks at scale: memory per clock, rebuild time, and fire lateness.

1. In memory: one million open clocks built from their stored documents and scheduled, as a
   rebuild does after reading them: bytes per clock (tracemalloc) and seconds.
2. From the store: a smaller set of clocks written to the local MongoDB-wire store (FerretDB) and
   read back per partition, as sla does on assignment; the rate, and what a million would take
   at that rate (an extrapolation, said as such).
3. Lateness: 10,000 clocks due in the same second, fired through the real path (publish to
   Kafka with acks=all, then save the clock), timed from their due time.
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

from aiokafka.admin import AIOKafkaAdminClient

from services.sla.domain import Clock, Milestone, SlaPolicy, Targets, start_clock
from services.sla.handlers import EventHandlers
from services.sla.store import SlaStore, clock_of, document_of
from services.sla.timers import ClockScheduler
from shared.admin import provision_topics
from shared.events import Category, Priority, TicketRouted
from shared.kafka import make_broker
from shared.mongo import connect
from shared.settings import CommonSettings

RESULTS = Path(__file__).with_name("results")
POLICY = SlaPolicy(Targets(timedelta(hours=24), timedelta(hours=2)))
PARTITIONS = 6


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
    start = datetime.now(UTC)
    documents = [document_of(clock(n, start)) for n in range(count)]

    async def never(_: Clock, __: Milestone) -> Clock:
        raise AssertionError("nothing is due")

    def rebuild(found: list[dict[str, Any]]) -> ClockScheduler:
        scheduler = ClockScheduler(never, lambda: start)
        for document in found:
            scheduler.add(clock_of(document, POLICY.calendar))
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
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(kept) == len(sample)
    return {
        "clocks": count,
        "rebuild_seconds": round(seconds, 2),
        "bytes_per_clock": round(held / len(sample)),
    }


async def from_store(settings: CommonSettings, count: int) -> dict[str, float]:
    client, database = connect(settings, "sla")
    store = SlaStore(database, POLICY.calendar)
    try:
        await store.ensure_indexes()
        start = datetime.now(UTC)
        clocks = database["clocks"]
        began = time.perf_counter()
        batch = [document_of(clock(n, start)) for n in range(count)]
        for first in range(0, count, 1000):
            await clocks.insert_many(batch[first : first + 1000], ordered=False)
        written = time.perf_counter() - began
        began = time.perf_counter()
        rebuilt = await store.pending_clocks(range(PARTITIONS))
        seconds = time.perf_counter() - began
        assert len(rebuilt) == count
        return {
            "clocks": count,
            "write_seconds": round(written, 2),
            "read_seconds": round(seconds, 2),
            "read_clocks_per_second": round(count / seconds),
            "extrapolated_seconds_for_1m": round(1_000_000 / (count / seconds)),
        }
    finally:
        await client.drop_database(settings.database_name("sla"))
        await client.close()


async def lateness(settings: CommonSettings, count: int) -> dict[str, float]:
    client, database = connect(settings, "sla")
    store = SlaStore(database, POLICY.calendar)
    broker = make_broker(settings, "sla-bench")
    await broker.start()
    fired_at: dict[str, float] = {}
    all_fired = asyncio.Event()
    try:
        handlers = EventHandlers(store, broker, settings.topics, POLICY, lambda: datetime.now(UTC))
        due = datetime.now(UTC) + timedelta(seconds=5)
        # First response due at the same second for every clock: started 2 h before it.
        clocks = [clock(n, due - timedelta(hours=2)) for n in range(count)]
        for first in range(0, count, 1000):
            await database["clocks"].insert_many(
                [document_of(c) for c in clocks[first : first + 1000]], ordered=False
            )
        real_fire = handlers.on_milestone_due

        async def timed_fire(fired: Clock, milestone: Milestone) -> Clock:
            result = await real_fire(fired, milestone)
            fired_at[fired.ticket_id] = time.time()
            if len(fired_at) == count:
                all_fired.set()
            return result

        scheduler = ClockScheduler(timed_fire, lambda: datetime.now(UTC))
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
    settings = CommonSettings(namespace="bench" + secrets.token_hex(3))
    await provision_topics(settings)
    try:
        return await work(settings)
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        await admin.delete_topics([spec.name for spec in settings.topics.specs()])
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clocks", type=int, default=1_000_000)
    parser.add_argument("--store-clocks", type=int, default=30_000)
    parser.add_argument("--due-together", type=int, default=10_000)
    args = parser.parse_args()
    memory = in_memory(args.clocks)
    store = asyncio.run(with_namespace(lambda s: from_store(s, args.store_clocks)))
    late = asyncio.run(with_namespace(lambda s: lateness(s, args.due_together)))
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
        f"in memory: {memory['clocks']:,} clocks rebuilt and scheduled in "
        f"{memory['rebuild_seconds']} s, {memory['bytes_per_clock']} bytes per clock "
        "(target: rebuild under 30 s)"
    )
    print(
        f"from the store (FerretDB): {store['clocks']:,} clocks read back in "
        f"{store['read_seconds']} s = {store['read_clocks_per_second']:,}/s; "
        f"1,000,000 at that rate: ~{store['extrapolated_seconds_for_1m']} s (extrapolated)"
    )
    print(
        f"lateness, {late['clocks']:,} clocks due in one second: p50 "
        f"{late['lateness_p50_seconds']} s, p99 {late['lateness_p99_seconds']} s, max "
        f"{late['lateness_max_seconds']} s (target p99 under 1 s); {late['fired']} fired"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
