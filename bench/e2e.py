"""The whole suite, end to end: tickets POSTed to intake over HTTP, through routing, sla and
notify, each a process of its own, on the local Kafka broker and FerretDB.

- at fixed rates: latency p50/p95/p99 from the POST to the ticket on its department topic
  (intake→routed) and to the enterprise's notification announced (intake→notified);
- at full speed: tickets per second end to end, from the first POST to the last notification;
- the ceiling, in the same run on the same broker: raw aiokafka produce→consume of records of
  the ticket events' size (acks=all, idempotent), and the ratio of the suite to it.

The load generator and the observer share this machine's two cores with the broker, the store
and the four services, so the figures are this machine's, and the ratio is the comparable one.
"""

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.sla import with_namespace
from shared.auth import Role, issue_credential
from shared.departments import DEPARTMENTS
from shared.settings import CommonSettings
from tests.chaos.infra import CACHE, alive
from tests.harness import ServiceProcess, environment, running_services, ticket_body

RESULTS = Path(__file__).with_name("results")
SERVICES = ["intake", "routing", "sla", "notify"]
SUBJECTS = [
    ("孩子学籍", "员工搬到天津后，孩子的北京学籍如何保留？", "daily_life"),
    ("税务登记", "迁入园区后税务登记怎么变更？", "administrative"),
    ("停电", "厂房今天上午停电，影响生产线。", "production"),
    ("专利补贴", "中关村认定企业的专利补贴如何申请？", "management"),
]


@dataclass
class Observed:
    """When each ticket was sent, and when it was seen routed and notified."""

    sent: dict[str, float] = field(default_factory=dict)
    routed: dict[str, float] = field(default_factory=dict)
    notified: dict[str, float] = field(default_factory=dict)
    refused: int = 0
    timed_out: int = 0


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    cuts = statistics.quantiles(values, n=100)
    return {
        "p50_ms": round(cuts[49] * 1000, 1),
        "p95_ms": round(cuts[94] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
    }


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_processes(processes: dict[str, ServiceProcess]) -> dict[str, int]:
    """Every process of this machine the run keeps busy: the four services, the local broker
    and store (when they are the project's own), and this one, the load generator."""
    pids = {name: p.process.pid for name, p in processes.items() if p.process is not None}
    external = {"kafka": "PARKDESK_KAFKA_BOOTSTRAP_SERVERS", "ferretdb": "PARKDESK_MONGODB_URL"}
    for name, variable in external.items():
        pidfile = CACHE / "state" / name / "pid"
        if os.environ.get(variable) or not pidfile.exists():
            continue
        pid = int(pidfile.read_text())
        if alive(pid):
            pids[name] = pid
    pids["load generator"] = os.getpid()
    return pids


class CpuMeter:
    """CPU seconds each process spends between start and stop."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._started = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def spent(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self._started[name] for name, pid in self._pids.items()}


def cpu_budget(spent: dict[str, float], tickets: int, seconds: float) -> dict[str, Any]:
    """What a ticket costs each process, and the rate the machine's cores could carry at that
    cost if they did nothing else (the load generator left out)."""
    per_ticket = {name: round(cpu / tickets * 1000, 2) for name, cpu in spent.items()}
    suite_ms = sum(ms for name, ms in per_ticket.items() if name != "load generator")
    cores = os.cpu_count() or 1
    return {
        "cpu_ms_per_ticket": per_ticket,
        "suite_cpu_ms_per_ticket": round(suite_ms, 2),
        "cores": cores,
        "busy_cores": round(sum(spent.values()) / seconds, 2),
        "cpu_bound_tickets_per_second": round(cores * 1000 / suite_ms, 1) if suite_ms else 0,
    }


async def reading_from_now(settings: CommonSettings, *topics: str) -> AIOKafkaConsumer:
    """A started consumer with its partitions assigned, reading what comes from now on."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    while not consumer.assignment():  # noqa: ASYNC110 - the client gives no signal
        await asyncio.sleep(0.05)
    return consumer


async def observe(settings: CommonSettings, seen: Observed, ready: asyncio.Event) -> None:
    topics = settings.topics
    consumer = await reading_from_now(
        settings, topics.notifications, *(topics.department(code) for code in DEPARTMENTS)
    )
    ready.set()
    try:
        async for record in consumer:
            now = time.perf_counter()
            event = json.loads(record.value or b"")
            ticket_id = event["ticket_id"]
            if event["type"] == "ticket.assigned":
                seen.routed.setdefault(ticket_id, now)
            elif event["type"] == "notification.sent" and event["trigger_type"] == (
                "ticket.submitted"
            ):
                seen.notified.setdefault(ticket_id, now)
    finally:
        await consumer.stop()


async def post(http: httpx.AsyncClient, url: str, token: str, n: int, seen: Observed) -> None:
    subject, description, category = SUBJECTS[n % len(SUBJECTS)]
    body = ticket_body(subject, description, category=category, enterprise_id=f"E-{n % 500}")
    started = time.perf_counter()
    try:
        answer = await http.post(
            url,
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        )
    except httpx.HTTPError:
        # Overloaded past the client's patience: counted, as a frontend would see it.
        seen.timed_out += 1
        return
    if answer.status_code == 202:
        seen.sent[answer.json()["ticket_id"]] = started
    else:
        seen.refused += 1


async def wait_done(seen: Observed, ticket_ids: list[str], within: float) -> None:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline and not all(t in seen.notified for t in ticket_ids):  # noqa: ASYNC110 - polled, not signalled
        await asyncio.sleep(0.1)


async def fixed_rate(
    http: httpx.AsyncClient, url: str, token: str, rate: float, seconds: float, seen: Observed
) -> dict[str, Any]:
    before = set(seen.sent)
    timed_out_before = seen.timed_out
    start = time.perf_counter()
    tasks = []
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(http, url, token, n, seen)))
    await asyncio.gather(*tasks)
    sent_late = time.perf_counter() - start - seconds
    ids = [t for t in seen.sent if t not in before]
    await wait_done(seen, ids, 120)
    routed = [seen.routed[t] - seen.sent[t] for t in ids if t in seen.routed]
    notified = [seen.notified[t] - seen.sent[t] for t in ids if t in seen.notified]
    return {
        "rate": rate,
        "tickets": len(ids),
        "timed_out": seen.timed_out - timed_out_before,
        "generator_behind_seconds": round(max(0.0, sent_late), 2),
        "routed": {"count": len(routed), **percentiles(routed)},
        "notified": {"count": len(notified), **percentiles(notified)},
    }


async def full_speed(
    http: httpx.AsyncClient,
    url: str,
    token: str,
    count: int,
    concurrency: int,
    seen: Observed,
    pids: dict[str, int],
) -> dict[str, Any]:
    before = set(seen.sent)
    meter = CpuMeter(pids)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            await post(http, url, token, queue.get_nowait(), seen)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    accepted_seconds = time.perf_counter() - start
    ids = [t for t in seen.sent if t not in before]
    await wait_done(seen, ids, 300)
    spent, elapsed = meter.spent(), time.perf_counter() - start
    routed = [seen.routed[t] for t in ids if t in seen.routed]
    notified = [seen.notified[t] for t in ids if t in seen.notified]
    return {
        "tickets": len(ids),
        "accepted_per_second": round(len(ids) / accepted_seconds, 1),
        "routed_per_second": round(len(routed) / (max(routed) - start), 1) if routed else 0,
        "end_to_end_per_second": round(len(notified) / (max(notified) - start), 1)
        if notified
        else 0,
        "notified": len(notified),
        # From the first POST until the last ticket was notified (or the wait gave up).
        "cpu": cpu_budget(spent, len(ids), elapsed) if ids else {},
    }


async def raw_ceiling(settings: CommonSettings, count: int, size: int) -> dict[str, Any]:
    """aiokafka alone: as many records of the events' size as it carries, produce→consume."""
    topic = settings.topics.tickets  # the suite's own layout: 6 partitions, same broker
    consumer = await reading_from_now(settings, topic)
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    payload = b"x" * size
    received = 0
    done = asyncio.Event()

    async def consume() -> None:
        nonlocal received
        while received < count:
            batches = await consumer.getmany(timeout_ms=1000)
            received += sum(len(records) for records in batches.values())
        done.set()

    reader = asyncio.create_task(consume())
    start = time.perf_counter()
    confirmations = [await producer.send(topic, payload, key=str(n).encode()) for n in range(count)]
    await asyncio.gather(*confirmations)
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - start
    await reader
    await producer.stop()
    await consumer.stop()
    return {"records": count, "bytes": size, "per_second": round(count / elapsed, 1)}


@contextmanager
def suite(settings: CommonSettings, secret: str) -> Iterator[dict[str, ServiceProcess]]:
    env = environment(settings, secret)
    # The services' logs stay beside the results, for a look when a figure surprises.
    logs = RESULTS / "e2e-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with running_services(SERVICES, env, logs) as processes:
        yield processes


async def run(settings: CommonSettings, args: argparse.Namespace) -> dict[str, Any]:
    secret = secrets.token_hex(32)
    token = issue_credential(secret, Role.FRONTEND, "bench-portal", timedelta(hours=2))
    seen = Observed()
    with suite(settings, secret) as processes:
        url = f"{processes['intake'].url}/v1/tickets"
        ready = asyncio.Event()
        observer = asyncio.create_task(observe(settings, seen, ready))
        await ready.wait()
        limits = httpx.Limits(max_connections=args.concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            await fixed_rate(http, url, token, 20, 3, seen)  # warm-up, not reported
            rates = [
                await fixed_rate(http, url, token, rate, args.seconds, seen) for rate in args.rates
            ]
            fastest = await full_speed(
                http, url, token, args.tickets, args.concurrency, seen, machine_processes(processes)
            )
        observer.cancel()
        await asyncio.gather(observer, return_exceptions=True)
    ceiling = await raw_ceiling(settings, args.raw_records, size=1500)
    return {
        "fixed_rates": rates,
        "full_speed": fastest,
        "raw_aiokafka": ceiling,
        "suite_to_raw_ratio": round(fastest["end_to_end_per_second"] / ceiling["per_second"], 4),
        "refused": seen.refused,
        "timed_out": seen.timed_out,
    }


def plot(figures: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [entry["rate"] for entry in figures["fixed_rates"]]
    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4.5))
    for stage, style in (("routed", "-"), ("notified", "--")):
        for cut, colour in (
            ("p50_ms", "tab:green"),
            ("p95_ms", "tab:orange"),
            ("p99_ms", "tab:red"),
        ):
            latency.plot(
                rates,
                [entry[stage][cut] for entry in figures["fixed_rates"]],
                style,
                marker="o",
                color=colour,
                label=f"intake→{stage} {cut.removesuffix('_ms')}",
            )
    latency.axhline(
        50, color="grey", linewidth=0.8, linestyle=":", label="50 ms target (routed p99 at 200/s)"
    )
    latency.set(
        xlabel="tickets per second offered", ylabel="latency (ms)", title="Latency at fixed rates"
    )
    latency.set_yscale("log")
    latency.legend(fontsize=7)
    full = figures["full_speed"]
    names = ["accepted (HTTP)", "routed", "end to end", "CPU-bound", "raw aiokafka"]
    values = [
        full["accepted_per_second"],
        full["routed_per_second"],
        full["end_to_end_per_second"],
        full["cpu"].get("cpu_bound_tickets_per_second", 0),
        figures["raw_aiokafka"]["per_second"],
    ]
    colours = ["tab:blue", "tab:blue", "tab:green", "tab:olive", "tab:grey"]
    throughput.bar(names, values, color=colours)
    throughput.axhline(1000, color="grey", linewidth=0.8, linestyle=":", label="1,000/s target")
    throughput.set(ylabel="per second", title=f"Full speed ({full['tickets']:,} tickets)")
    throughput.set_yscale("log")
    throughput.legend(fontsize=7)
    fig.suptitle(f"parkdesk end to end, {time.strftime('%Y-%m-%d %H:%M')}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[20, 50, 100, 200])
    parser.add_argument("--seconds", type=float, default=10, help="per fixed rate")
    parser.add_argument("--tickets", type=int, default=1500, help="at full speed")
    # The generator shares the machine's cores with the suite: with 64 connections httpx spent
    # 7.1 ms of CPU a ticket, with 16 3.6 ms, for the same tickets per second end to end.
    parser.add_argument("--concurrency", type=int, default=16, help="connections at full speed")
    parser.add_argument("--raw-records", type=int, default=50_000)
    args = parser.parse_args()
    figures = asyncio.run(with_namespace(lambda s: run(s, args)))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "e2e.json"
    out.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures}, indent=2))
    plot(figures, RESULTS / "e2e.png")
    for entry in figures["fixed_rates"]:
        routed, notified = entry["routed"], entry["notified"]
        print(
            f"{entry['rate']:>5.0f}/s offered, {entry['tickets']} tickets accepted, "
            f"{entry['timed_out']} timed out: intake→routed p50 "
            f"{routed['p50_ms']} ms p95 {routed['p95_ms']} ms p99 {routed['p99_ms']} ms; "
            f"intake→notified p50 {notified['p50_ms']} ms p99 {notified['p99_ms']} ms"
        )
    full, raw = figures["full_speed"], figures["raw_aiokafka"]
    print(
        f"full speed, {full['tickets']:,} tickets: {full['accepted_per_second']:,}/s accepted, "
        f"{full['routed_per_second']:,}/s routed, {full['end_to_end_per_second']:,}/s end to end "
        f"(target 1,000/s); raw aiokafka {raw['per_second']:,}/s of {raw['bytes']}-byte records; "
        f"suite/raw {figures['suite_to_raw_ratio']:.2%}"
    )
    if cpu := full["cpu"]:
        costs = ", ".join(f"{name} {ms}" for name, ms in cpu["cpu_ms_per_ticket"].items())
        print(
            f"CPU per ticket at full speed (ms): {costs}; the suite's "
            f"{cpu['suite_cpu_ms_per_ticket']} ms on {cpu['cores']} cores bound it to "
            f"{cpu['cpu_bound_tickets_per_second']:,}/s ({cpu['busy_cores']} cores busy)"
        )
    print(f"written to {out} and {RESULTS / 'e2e.png'}")


if __name__ == "__main__":
    main()
