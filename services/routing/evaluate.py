"""`parkdesk-routing-eval [LABELLED.jsonl] [--policy FILE]`: how well a policy routes a labelled
set of tickets: accuracy overall and per department, the confusion pairs, and each miss."""

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from services.routing.domain import POLICY_FILE, Decision, Policy, load_policy
from shared.events import Category, Contact, Enterprise, Language, Origin, TicketContent

LABELLED_FILE = Path(__file__).resolve().parents[2] / "tests" / "routing" / "labelled_tickets.jsonl"
TARGET = 0.95


@dataclass(frozen=True)
class Labelled:
    id: str
    expected: str
    ticket: TicketContent


@dataclass(frozen=True)
class Evaluation:
    results: list[tuple[Labelled, Decision]]

    @property
    def accuracy(self) -> float:
        return sum(d.department == t.expected for t, d in self.results) / len(self.results)

    def per_department(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for labelled, decision in self.results:
            totals[labelled.expected][1] += 1
            totals[labelled.expected][0] += decision.department == labelled.expected
        return {code: (right, total) for code, (right, total) in sorted(totals.items())}

    def confusions(self) -> Counter[tuple[str, str]]:
        return Counter(
            (t.expected, d.department) for t, d in self.results if d.department != t.expected
        )


def read_labelled(path: Path) -> list[Labelled]:
    labelled = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        language = (
            Language.ZH if any("\u4e00" <= c <= "\u9fff" for c in row["subject"]) else (Language.EN)
        )
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
                language=language,
            ),
            category=Category(row["category"]),
            subject=row["subject"],
            description=row["description"],
        )
        labelled.append(Labelled(row["id"], row["expected"], ticket))
    return labelled


def evaluate(policy: Policy, labelled: list[Labelled]) -> Evaluation:
    return Evaluation([(item, policy.decide(item.ticket)) for item in labelled])


def report(evaluation: Evaluation, policy: Policy) -> str:
    results = evaluation.results
    right = sum(d.department == t.expected for t, d in results)
    lines = [
        f"policy {policy.version} ({len(policy.rules)} rules) on {len(results)} labelled tickets",
        f"accuracy: {evaluation.accuracy:.1%} ({right}/{len(results)}; target {TARGET:.0%})",
        "",
        "per department:",
    ]
    for code, (good, total) in evaluation.per_department().items():
        lines.append(f"  {code:<16} {good / total:6.1%}  ({good}/{total})")
    confusions = evaluation.confusions()
    lines += ["", "confusion pairs (expected -> routed):"]
    lines += [f"  {a} -> {b}: {n}" for (a, b), n in confusions.most_common()] or ["  none"]
    misses = [(t, d) for t, d in results if d.department != t.expected]
    if misses:
        lines += ["", "misrouted:"]
        for labelled, decision in misses:
            lines.append(
                f"  {labelled.id} expected {labelled.expected}, got {decision.department}"
                f" ({decision.reason}): {labelled.ticket.subject}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="parkdesk-routing-eval", description=__doc__)
    parser.add_argument("labelled", nargs="?", type=Path, default=LABELLED_FILE)
    parser.add_argument("--policy", type=Path, default=POLICY_FILE)
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    evaluation = evaluate(policy, read_labelled(args.labelled))
    print(report(evaluation, policy))
    sys.exit(0 if evaluation.accuracy >= TARGET else 1)


if __name__ == "__main__":
    main()
