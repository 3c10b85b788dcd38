"""How routing learns: the labelled tickets it ships with, the corrections it gathers, and the
gate a new model must pass before it routes anything.

- The labelled tickets (labelled/*.jsonl) are the router's first examples and its yardstick.
- A correction is a ticket's text and the department that kept it: every accepted transfer a
  department makes, every dispatch out of triage. The last one per ticket counts.
- A retrained model is refused if it routes the labelled tickets worse than the one in force.

Pure: reads the shipped labelled files and nothing else.
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.routing.domain import Policy
from services.routing.ranker import Ranker
from services.routing.router import Router, measured_rule_confidence, ticket_text
from shared.events import Category, Contact, Enterprise, Language, Origin, TicketContent

LABELLED_DIR = Path(__file__).with_name("labelled")
LABELLED_FILES = tuple(sorted(LABELLED_DIR.glob("*.jsonl")))
"""The tickets written with the first rules, the two sets held out from them, and the tickets
written from each department's remit to teach the ranker everyday wording."""
CORRECTION_WEIGHT = 2.0
"""A correction counts twice a shipped example: it is what this desk's own tickets look like."""


@dataclass(frozen=True, slots=True)
class Labelled:
    id: str
    expected: str
    ticket: TicketContent


@dataclass(frozen=True, slots=True)
class Correction:
    ticket_id: str
    text: str
    department: str


def read_labelled(path: Path) -> list[Labelled]:
    labelled = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        chinese = any("\u4e00" <= c <= "\u9fff" for c in row["subject"])
        ticket = TicketContent(
            enterprise=Enterprise(
                id=f"E-{number}",
                name="Labelled Co.",
                origin=Origin(row["origin"]),
                zhongguancun_certified=row["zhongguancun_certified"],
            ),
            contact=Contact(
                name="Tester",
                phone="+86 138 0000 0000",
                email="tester@example.com",
                language=Language.ZH if chinese else Language.EN,
            ),
            category=Category(row["category"]),
            subject=row["subject"],
            description=row["description"],
        )
        labelled.append(Labelled(row["id"], row["expected"], ticket))
    return labelled


def shipped_labelled() -> list[Labelled]:
    return [item for path in LABELLED_FILES for item in read_labelled(path)]


def shipped_labelled_digest() -> str:
    """Changes whenever a shipped labelled file does: a model trained on others is stale."""
    digest = hashlib.sha256()
    for path in LABELLED_FILES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def latest_per_ticket(corrections: Iterable[Correction]) -> list[Correction]:
    """The department that kept each ticket: the last correction of it wins."""
    return list({c.ticket_id: c for c in corrections}.values())


def build_router(
    policy: Policy, ranker: Ranker, threshold: float, labelled: Sequence[Labelled]
) -> Router:
    pairs = [(item.ticket, item.expected) for item in labelled]
    return Router(policy, ranker, threshold, measured_rule_confidence(policy, pairs))


def accuracy(router: Router, labelled: Sequence[Labelled]) -> float:
    if not labelled:
        return 0.0
    return sum(router.decide(i.ticket).department == i.expected for i in labelled) / len(labelled)


def training_rows(
    labelled: Sequence[Labelled], corrections: Sequence[Correction]
) -> list[dict[str, object]]:
    """What the trainer is given: every labelled ticket, then every correction, weighted."""
    rows: list[dict[str, object]] = [
        {"text": ticket_text(item.ticket), "department": item.expected, "weight": 1.0}
        for item in labelled
    ]
    rows += [
        {"text": c.text, "department": c.department, "weight": CORRECTION_WEIGHT}
        for c in latest_per_ticket(corrections)
    ]
    return rows
