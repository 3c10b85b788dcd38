"""How routing learns from corrections: the learning curve, through the running suite.

The first blind set is split once, by a fixed shuffle, into tickets to feed (200) and tickets to
measure (the rest, never fed). intake and routing run as real processes on real Kafka and the
store, in a namespace of their own. At each point of the curve (0, 50 and 200 tickets fed):

- the tickets fed since the last point are submitted through intake's API; each one routing
  sends to the wrong department is transferred, through intake's API with that department's
  credential, to the department that owns it (from triage, that is a dispatch): a real
  correction, which routing stores as an example;
- `POST /v1/routing/retrain` builds a new model, and the measured tickets are routed by the
  model in force through `POST /v1/routing/dry-run`.

Beside it, in the same run, the same curve offline with every fed ticket given as an example
(as if each had been confirmed by the department that kept it): what the model can learn from
that many tickets, where the suite's curve learns only from the ones it got wrong.

`python -m bench.routing_learning` prints the curve and writes bench/results/routing_learning.json.
"""

import argparse
import asyncio
import json
import secrets
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.sla import with_namespace
from services.routing.evaluate import BLIND_FILES, shipped_router
from services.routing.learning import CORRECTION_WEIGHT, Labelled, read_labelled
from services.routing.router import ticket_text
from services.routing.training import Example
from shared.auth import Role, issue_credential
from shared.settings import CommonSettings
from tests.harness import environment, running_services, ticket_body

RESULTS = Path(__file__).with_name("results")
POINTS = (0, 50, 200)


def split(tickets: list[Labelled], fed: int) -> tuple[list[Labelled], list[Labelled]]:
    order = sorted(tickets, key=lambda t: zlib.crc32(t.id.encode()))
    return order[:fed], order[fed:]


def body(item: Labelled) -> dict[str, Any]:
    ticket = item.ticket
    return ticket_body(
        ticket.subject,
        ticket.description,
        origin=ticket.enterprise.origin.value,
        zhongguancun_certified=ticket.enterprise.zhongguancun_certified,
        category=ticket.category.value,
    )


class Desk:
    """The running suite, as the frontend, the departments and the admin use it."""

    def __init__(self, http: httpx.AsyncClient, urls: dict[str, str], secret: str) -> None:
        self.http, self.urls, self.secret = http, urls, secret

    def headers(self, role: Role, subject: str) -> dict[str, str]:
        token = issue_credential(self.secret, role, subject, timedelta(hours=2))
        return {"Authorization": f"Bearer {token}"}

    async def feed(self, item: Labelled) -> bool:
        """Submits the ticket; transfers it if routing got it wrong. True if it did."""
        frontend = self.headers(Role.FRONTEND, "bench-portal")
        answer = await self.http.post(
            f"{self.urls['intake']}/v1/tickets",
            json=body(item),
            headers={**frontend, "Idempotency-Key": secrets.token_hex(8)},
        )
        answer.raise_for_status()
        ticket_id = answer.json()["ticket_id"]
        department = await self.department_of(ticket_id, frontend)
        if department == item.expected:
            return False
        moved = await self.http.post(
            f"{self.urls['intake']}/v1/tickets/{ticket_id}/transfer",
            json={"to_department": item.expected, "reason": "this is ours"},
            headers=self.headers(Role.DEPARTMENT, department),
        )
        moved.raise_for_status()
        return True

    async def department_of(self, ticket_id: str, headers: dict[str, str]) -> str:
        for _ in range(600):
            view = await self.http.get(
                f"{self.urls['intake']}/v1/tickets/{ticket_id}", headers=headers
            )
            if view.status_code == 200 and view.json()["department"]:
                return str(view.json()["department"])
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{ticket_id} was never routed")

    async def retrain_after(self, corrections: int) -> dict[str, Any]:
        admin = self.headers(Role.ADMIN, "bench")
        for _ in range(1200):
            model = await self.http.get(f"{self.urls['routing']}/v1/routing/model", headers=admin)
            if model.json()["corrections_stored"] >= corrections:
                break
            await asyncio.sleep(0.05)
        answer = await self.http.post(
            f"{self.urls['routing']}/v1/routing/retrain", headers=admin, timeout=600
        )
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    async def accuracy(self, measured: list[Labelled]) -> dict[str, float]:
        asker = self.headers(Role.FRONTEND, "bench-portal")  # the portal asks at its own rate
        right = triaged = 0
        for item in measured:
            answer = await self.http.post(
                f"{self.urls['routing']}/v1/routing/dry-run",
                json=body(item),
                headers=asker,
            )
            answer.raise_for_status()
            department = answer.json()["department"]
            right += department == item.expected
            triaged += department == "park-service" != item.expected
        return {
            "accuracy": round(right / len(measured), 4),
            "triage": round(triaged / len(measured), 4),
        }


async def through_the_suite(
    settings: CommonSettings, fed: list[Labelled], measured: list[Labelled]
) -> list[dict[str, Any]]:
    secret = secrets.token_hex(32)
    logs = RESULTS / "routing-learning-logs"
    logs.mkdir(parents=True, exist_ok=True)
    curve = []
    with running_services(["intake", "routing"], environment(settings, secret), logs) as found:
        urls = {name: process.url for name, process in found.items()}
        async with httpx.AsyncClient(timeout=60) as http:
            desk = Desk(http, urls, secret)
            corrections, done = 0, 0
            for point in POINTS:
                for item in fed[done:point]:
                    corrections += await desk.feed(item)
                done = point
                model = await desk.retrain_after(corrections) if point else None
                figures = await desk.accuracy(measured)
                curve.append(
                    {
                        "fed": point,
                        "corrections": corrections,
                        "model": model["in_force"] if model else "shipped",
                        "accepted": model["accepted"] if model else None,
                        **figures,
                    }
                )
                print(f"  through the suite: {curve[-1]}", flush=True)
    return curve


def offline(fed: list[Labelled], measured: list[Labelled]) -> list[dict[str, Any]]:
    curve = []
    for point in POINTS:
        examples = [
            Example(ticket_text(item.ticket), item.expected, CORRECTION_WEIGHT)
            for item in fed[:point]
        ]
        router = shipped_router(extra=examples)
        decided = [router.decide(item.ticket).department for item in measured]
        right = sum(d == item.expected for d, item in zip(decided, measured, strict=True))
        triaged = sum(
            d == "park-service" != item.expected for d, item in zip(decided, measured, strict=True)
        )
        curve.append(
            {
                "fed": point,
                "accuracy": round(right / len(measured), 4),
                "triage": round(triaged / len(measured), 4),
            }
        )
        print(f"  offline: {curve[-1]}", flush=True)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blind", type=Path, default=BLIND_FILES[0])
    args = parser.parse_args()
    fed, measured = split(read_labelled(args.blind), max(POINTS))
    print(f"learning curve: {len(fed)} tickets to feed, {len(measured)} measured ({args.blind})")
    started = time.perf_counter()
    suite = asyncio.run(with_namespace(lambda s: through_the_suite(s, fed, measured)))
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "blind_set": args.blind.name,
        "measured": len(measured),
        "through_the_suite": suite,
        "offline_every_fed_ticket_an_example": offline(fed, measured),
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "routing_learning.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
