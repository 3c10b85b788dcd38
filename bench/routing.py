"""Routing decision speed and footprint: the whole router, and the override policy alone.

- The router as the service runs it (override rules, then the trained ranker): decisions per
  second, median and p99 of one decision, the time to load its model from the stored blob, the
  blob's size, and the resident memory of a process that has loaded routing and its model.
- The override policy, and a generated 1,000-rule policy: the same timings, and beside them, on
  the same tickets, a naive matcher that tests every term of every rule with `in`: the ratio is
  what the automaton buys, and stays meaningful on a noisy machine where absolute figures drift.
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from services.routing.domain import Policy, load_policy, normalise, parse_policy
from services.routing.evaluate import shipped_router
from services.routing.knowledge import load_knowledge
from services.routing.learning import shipped_labelled
from services.routing.ranker import dump_ranker, load_ranker
from shared.departments import DEPARTMENTS, SUPERVISION
from shared.events import TicketContent

RESULTS = Path(__file__).with_name("results")
TARGET_P99_MS = 1.0
TARGET_LOAD_S = 2.0
TARGET_RSS_MB = 200
# A process that imports routing's service, loads its model and routes a ticket, then reports
# its resident memory in kB (Linux: the second field of statm, in pages).
_FOOTPRINT = """
import os, sys
from services.routing import main
from services.routing.knowledge import load_knowledge
from services.routing.learning import shipped_labelled
from services.routing.ranker import load_ranker
knowledge = load_knowledge()
ranker = load_ranker(sys.stdin.buffer.read(), knowledge)
shipped_labelled()
ranker.rank("小区楼下烧烤店油烟太大 the smoke comes in")
pages = int(open("/proc/self/statm").read().split()[1])
print(pages * os.sysconf("SC_PAGE_SIZE") // 1024)
"""

_HANZI = (
    "学籍社保户口税务发票专利补贴搬迁注册地址停电燃气供水宽带环评排污班车停车公寓住房入学幼儿园"
)
_WORDS = [
    "tax",
    "permit",
    "licence",
    "patent",
    "subsidy",
    "school",
    "housing",
    "power",
    "water",
    "parking",
    "bus",
    "relocation",
    "registration",
    "insurance",
    "pension",
    "hukou",
    "invoice",
    "trademark",
    "incubator",
    "lab",
    "office",
    "canteen",
    "emission",
    "noise",
]


def generated_policy(rules: int, seed: int = 7) -> str:
    """A policy of `rules` rules over realistic terms, as an operator's large file might be."""
    chooser = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    targets = [code for code in DEPARTMENTS if code != SUPERVISION]
    lines = ['version = "generated"']
    for index in range(rules):
        terms = set()
        for _ in range(chooser.randint(3, 8)):
            if chooser.random() < 0.5:
                start = chooser.randrange(len(_HANZI) - 2)
                terms.add(_HANZI[start : start + chooser.randint(2, 3)])
            else:
                terms.add(
                    f"{chooser.choice(_WORDS)} {chooser.choice(_WORDS)}{index}"
                    if chooser.random() < 0.5
                    else chooser.choice(_WORDS)
                )
        quoted = ", ".join(json.dumps(term, ensure_ascii=False) for term in sorted(terms))
        lines += [
            "[[rule]]",
            f'id = "generated-{index}"',
            f'department = "{chooser.choice(targets)}"',
            f"priority = {chooser.randint(10, 90)}",
            f"any = [{quoted}]",
            "",
        ]
    return "\n".join(lines)


def naive_decide(policy: Policy, ticket: TicketContent) -> str | None:
    """The obvious matcher: every term of every rule, tested with `in`."""
    text = normalise(f"{ticket.subject}\n{ticket.description}")
    best: tuple[int, str] | None = None
    for rule in policy.rules:
        if any(term.text in text for term in rule.any) and (
            best is None or rule.priority > best[0]
        ):
            best = (rule.priority, rule.department)
    return best[1] if best else None


def time_decisions(
    decide: Callable[[TicketContent], object], tickets: list[TicketContent], rounds: int
) -> list[float]:
    samples = []
    for _ in range(rounds):
        for ticket in tickets:
            start = time.perf_counter_ns()
            decide(ticket)
            samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


@dataclass(frozen=True)
class Timing:
    decisions: int
    decisions_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples: list[float]) -> "Timing":
        """Decisions per second over the time spent deciding, and percentiles of one decision."""
        ordered = sorted(samples)
        return cls(
            decisions=len(samples),
            decisions_per_second=round(len(samples) / (sum(samples) / 1000), 1),
            p50_ms=round(statistics.median(ordered), 4),
            p99_ms=round(ordered[int(len(ordered) * 0.99) - 1], 4),
            max_ms=round(ordered[-1], 4),
        )


@dataclass(frozen=True)
class Measurement:
    policy: str
    rules: int
    load_ms: float
    automaton: Timing
    naive_scan: Timing

    @property
    def speedup(self) -> float:
        return round(self.naive_scan.p50_ms / self.automaton.p50_ms, 1)


def measure(
    name: str, policy_text: str | None, tickets: list[TicketContent], rounds: int
) -> Measurement:
    started = time.perf_counter()
    policy = load_policy() if policy_text is None else parse_policy(policy_text, name)
    load_ms = (time.perf_counter() - started) * 1000
    time_decisions(policy.decide, tickets, 1)  # warm up
    return Measurement(
        policy=name,
        rules=len(policy.rules),
        load_ms=round(load_ms, 1),
        automaton=Timing.of(time_decisions(policy.decide, tickets, rounds)),
        naive_scan=Timing.of(time_decisions(lambda t: naive_decide(policy, t), tickets, rounds)),
    )


@dataclass(frozen=True)
class RouterMeasurement:
    model: str
    decisions: Timing
    model_load_s: float
    model_blob_mb: float
    process_rss_mb: float


def measure_router(tickets: list[TicketContent], rounds: int) -> RouterMeasurement:
    router = shipped_router()
    knowledge = load_knowledge()
    blob = dump_ranker(router.ranker, knowledge.digest)
    started = time.perf_counter()
    load_ranker(blob, knowledge)
    load_s = time.perf_counter() - started
    footprint = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", _FOOTPRINT], input=blob, capture_output=True, check=True
    )
    time_decisions(router.decide, tickets, 1)  # warm up
    return RouterMeasurement(
        model=router.model_version,
        decisions=Timing.of(time_decisions(router.decide, tickets, rounds)),
        model_load_s=round(load_s, 3),
        model_blob_mb=round(len(blob) / 2**20, 2),
        process_rss_mb=round(int(footprint.stdout) / 1024, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50, help="passes over the labelled set")
    args = parser.parse_args()
    tickets = [item.ticket for item in shipped_labelled()]
    router = measure_router(tickets, max(1, args.rounds // 5))
    results = [
        measure("shipped", None, tickets, args.rounds),
        measure("generated-1000", generated_policy(1000), tickets, max(1, args.rounds // 5)),
    ]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "routing.json"
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "tickets": len(tickets),
                "router": asdict(router),
                "results": [
                    {**asdict(row), "speedup_over_naive_p50": row.speedup} for row in results
                ],
            },
            indent=2,
        )
    )
    decisions = router.decisions
    print(
        f"router {router.model}: {decisions.decisions_per_second:.0f} decisions/s, p50 "
        f"{decisions.p50_ms:.3f} ms, p99 {decisions.p99_ms:.3f} ms (target < {TARGET_P99_MS}); "
        f"model loads in {router.model_load_s:.2f} s (target < {TARGET_LOAD_S}), "
        f"{router.model_blob_mb} MB stored; routing process {router.process_rss_mb} MB "
        f"(target < {TARGET_RSS_MB})"
    )
    print(f"override policies on {len(tickets)} labelled tickets:")
    print(
        f"{'policy':<16}{'rules':>6}{'load ms':>9}{'dec/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'naive p50':>11}{'speedup':>9}"
    )
    for row in results:
        auto = row.automaton
        print(
            f"{row.policy:<16}{row.rules:>6}{row.load_ms:>9}{auto.decisions_per_second:>10.0f}"
            f"{auto.p50_ms:>9.3f}{auto.p99_ms:>9.3f}{row.naive_scan.p50_ms:>11.3f}"
            f"{row.speedup:>8}x"
        )
    print(f"written to {out}")
    checks = {
        f"router p99 {decisions.p99_ms} ms": decisions.p99_ms < TARGET_P99_MS,
        f"model load {router.model_load_s} s": router.model_load_s < TARGET_LOAD_S,
        f"routing process {router.process_rss_mb} MB": router.process_rss_mb < TARGET_RSS_MB,
    }
    for figure, met in checks.items():
        if not met:
            print(f"missed: {figure}", file=sys.stderr)


if __name__ == "__main__":
    main()
