"""The routing decision: jurisdiction overrides first, then the ranker, and triage when unsure.

A ticket whose owner depends on jurisdiction (the Beijing or Zhongguancun side of a matter that
Tianjin handles otherwise) is settled by the override rules of the policy; a rule's confidence
is its precision measured on the labelled tickets. Every other ticket goes to the department
the ranker finds most probable, if that probability reaches the threshold; below it, the ticket
goes to park-service triage with the ranker's top three, so a triage agent dispatches it with
one transfer. Every decision explains itself: the rule or the terms that scored, the runner-up
with its confidence, and the versions of the policy and the model.

Pure: no Kafka, no MongoDB.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace

from services.routing.domain import Decision, Policy
from services.routing.ranker import Ranker, Scored
from shared.departments import TRIAGE
from shared.events import Candidate, RunnerUp, TicketContent

DEFAULT_THRESHOLD = 0.5
RULE_PRIOR = (9.0, 1.0)
"""A rule's precision before it is measured: as if right 9 times of 10."""


def ticket_text(ticket: TicketContent) -> str:
    return f"{ticket.subject}\n{ticket.description}"


@dataclass(frozen=True)
class Router:
    policy: Policy
    ranker: Ranker
    threshold: float
    rule_confidence: dict[str, float]

    @property
    def model_version(self) -> str:
        return self.ranker.version

    def decide(self, ticket: TicketContent) -> Decision:
        ranked = self.ranker.rank(ticket_text(ticket))
        candidates = tuple(_candidate(scored) for scored in ranked[:3])
        ruled = self.policy.decide(ticket, matter=ranked[0].department)
        if ruled.rule_id is not None:
            other = next(s for s in ranked if s.department != ruled.department)
            return replace(
                ruled,
                confidence=self.rule_confidence.get(ruled.rule_id, _prior()),
                runner_up=_runner_up(other, self.model_version),
                candidates=candidates,
                model_version=self.model_version,
            )
        best, second = ranked[0], ranked[1]
        if best.probability < self.threshold:
            return Decision(
                department=TRIAGE,
                reason=(
                    f"unsure: {_scored(best)}, {_scored(second)}, below {self.threshold:.0%}; "
                    "triage dispatches it"
                ),
                rule_id=None,
                matched_terms=(),
                runner_up=_runner_up(best, self.model_version),
                policy_version=self.policy.version,
                confidence=_probability(ranked, TRIAGE),
                candidates=candidates,
                model_version=self.model_version,
            )
        terms = ", ".join(best.terms) or "its wording"
        return Decision(
            department=best.department,
            reason=f"ranker {self.model_version}: {terms} ({best.probability:.0%}); "
            f"runner-up {_scored(second)}",
            rule_id=None,
            matched_terms=best.terms,
            runner_up=_runner_up(second, self.model_version),
            policy_version=self.policy.version,
            confidence=round(best.probability, 4),
            candidates=candidates,
            model_version=self.model_version,
        )


def measured_rule_confidence(
    policy: Policy, labelled: Iterable[tuple[TicketContent, str]]
) -> dict[str, float]:
    """Each rule's precision on the labelled tickets, smoothed towards the prior."""
    fired: dict[str, list[int]] = {}
    for ticket, expected in labelled:
        decision = policy.decide(ticket)
        if decision.rule_id is not None:
            counts = fired.setdefault(decision.rule_id, [0, 0])
            counts[0] += decision.department == expected
            counts[1] += 1
    right_prior, wrong_prior = RULE_PRIOR
    return {
        rule: round((right + right_prior) / (total + right_prior + wrong_prior), 4)
        for rule, (right, total) in fired.items()
    }


def _prior() -> float:
    right, wrong = RULE_PRIOR
    return right / (right + wrong)


def _candidate(scored: Scored) -> Candidate:
    return Candidate(
        department=scored.department,
        confidence=round(scored.probability, 4),
        matched_terms=scored.terms,
    )


def _runner_up(scored: Scored, model_version: str) -> RunnerUp:
    return RunnerUp(
        department=scored.department,
        rule_id=f"model:{model_version}",
        matched_terms=scored.terms,
        confidence=round(scored.probability, 4),
    )


def _scored(scored: Scored) -> str:
    return f"{scored.department} {scored.probability:.0%}"


def _probability(ranked: list[Scored], department: str) -> float:
    return round(next(s.probability for s in ranked if s.department == department), 4)
