"""`make chaos`: the pipeline under crashes, broker failure and a store outage, with thousands
of tickets; prints and writes what became of them (bench/results/chaos.json)."""

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.chaos.scenario import Load, on_the_local_broker, on_three_brokers

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    logs = RESULTS / "chaos-logs"
    outcomes = [
        await on_the_local_broker(Load(args.tickets, args.rate, args.sla_seconds), logs, args.seed)
    ]
    with tempfile.TemporaryDirectory(prefix="parkdesk-cluster-") as state:
        outcomes.append(
            await on_three_brokers(
                Load(args.tickets // 2, args.rate, args.sla_seconds), logs, args.seed, Path(state)
            )
        )
    return outcomes


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=8, help="tickets per second offered")
    parser.add_argument("--sla-seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    outcomes = asyncio.run(main(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chaos.json").write_text(json.dumps({"seed": args.seed, "runs": outcomes}, indent=2))
    for outcome in outcomes:
        print(f"\n== {outcome['scenario']} ==")
        for name, value in outcome.items():
            if name not in ("scenario", "examples"):
                print(f"  {name:<26} {value}")
        for example in outcome["examples"]:
            print(f"  ! {example}")
    sys.exit(0 if all(outcome["clean"] for outcome in outcomes) else 1)


if __name__ == "__main__":
    run()
