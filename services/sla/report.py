"""`parkdesk-sla-report [--since ISO] [--until ISO]`: the SLA report from sla's own store."""

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from services.sla.config import SlaSettings
from services.sla.handlers import Report, build_report
from services.sla.store import SlaStore
from shared.mongo import connect


def render(found: Report) -> str:
    def rate(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.1%}"

    lines = [
        f"SLA report {found.since:%Y-%m-%d %H:%M} – {found.until:%Y-%m-%d %H:%M} UTC",
        f"{'department':<18}{'tickets':>8}{'response':>10}{'resolution':>12}"
        f"{'satisfied':>11}{'open':>6}{'at risk':>9}{'breached':>10}",
    ]
    for name, f in found.departments.items():
        lines.append(
            f"{name:<18}{f.tickets:>8}{rate(f.response_rate):>10}"
            f"{rate(f.resolution_rate):>12}{rate(f.satisfaction_rate):>11}"
            f"{f.open:>6}{f.at_risk:>9}{f.breached:>10}"
        )
    return "\n".join(lines)


async def produce(since: datetime, until: datetime) -> Report:
    settings = SlaSettings()
    client, database = connect(settings, "sla")
    try:
        store = SlaStore(database, settings.policy().calendar)
        clocks = await store.started_between(since, until)
        return build_report(clocks, since, until, datetime.now(UTC))
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="parkdesk-sla-report", description=__doc__)
    parser.add_argument("--since", type=datetime.fromisoformat, help="default: 30 days ago")
    parser.add_argument("--until", type=datetime.fromisoformat, help="default: now")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    until = args.until or datetime.now(UTC)
    since = args.since or until - timedelta(days=30)
    found = asyncio.run(produce(since, until))
    print(found.model_dump_json(indent=2) if args.json else render(found))


if __name__ == "__main__":
    main()
