"""The 24-hour clock of one ticket: when it warns, when it breaches, and what it says then.

Pure: the caller passes the time; nothing here reads a clock, Kafka or a store.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.departments import SUPERVISION
from shared.events import Event, SlaBreached, SlaStarted, SlaWarning, TicketRouted

BREACHED = "breached"


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    resolution_target: timedelta
    first_response_target: timedelta
    warning_thresholds: tuple[float, ...]

    def __post_init__(self) -> None:
        if not all(0 < threshold < 1 for threshold in self.warning_thresholds):
            raise ValueError("warning thresholds are shares of the target, between 0 and 1")


@dataclass(frozen=True, slots=True)
class Milestone:
    name: str
    due_at: datetime
    threshold: float | None
    """The share of the target a warning marks; None for the breach."""


@dataclass(frozen=True, slots=True)
class Clock:
    ticket_id: str
    correlation_id: str
    department: str
    partition: int
    started_at: datetime
    resolution_due_at: datetime
    first_response_due_at: datetime
    milestones: tuple[Milestone, ...]
    fired: frozenset[str] = field(default_factory=frozenset)

    def next_milestone(self) -> Milestone | None:
        return next((m for m in self.milestones if m.name not in self.fired), None)

    def with_fired(self, name: str) -> "Clock":
        return replace(self, fired=self.fired | {name})


def warning_name(threshold: float) -> str:
    return f"warning-{round(threshold * 100)}"


def start_clock(event: TicketRouted, policy: SlaPolicy, partition: int) -> Clock:
    """The clock runs from submission, not routing: the promise is to the enterprise."""
    started_at = event.submitted_at
    due_at = started_at + policy.resolution_target
    warnings = [
        Milestone(warning_name(t), started_at + policy.resolution_target * t, t)
        for t in sorted(policy.warning_thresholds)
    ]
    return Clock(
        ticket_id=event.ticket_id,
        correlation_id=event.correlation_id,
        department=event.department,
        partition=partition,
        started_at=started_at,
        resolution_due_at=due_at,
        first_response_due_at=started_at + policy.first_response_target,
        milestones=(*warnings, Milestone(BREACHED, due_at, None)),
    )


def started_event(clock: Clock) -> SlaStarted:
    return SlaStarted(
        event_id=Event.derived_id(clock.ticket_id, "sla.started"),
        ticket_id=clock.ticket_id,
        correlation_id=clock.correlation_id,
        department=clock.department,
        started_at=clock.started_at,
        resolution_due_at=clock.resolution_due_at,
        first_response_due_at=clock.first_response_due_at,
    )


def milestone_event(clock: Clock, milestone: Milestone, now: datetime) -> SlaWarning | SlaBreached:
    """The event a milestone fires, with an id fixed by ticket and milestone: a re-fire after a
    crash or a rebalance repeats the same event, which consumers recognise."""
    event_id = Event.derived_id(clock.ticket_id, "sla", milestone.name)
    if milestone.threshold is None:
        return SlaBreached(
            event_id=event_id,
            occurred_at=now,
            ticket_id=clock.ticket_id,
            correlation_id=clock.correlation_id,
            department=clock.department,
            escalated_to=SUPERVISION,
            resolution_due_at=clock.resolution_due_at,
            overdue_seconds=max(0.0, (now - clock.resolution_due_at).total_seconds()),
        )
    return SlaWarning(
        event_id=event_id,
        occurred_at=now,
        ticket_id=clock.ticket_id,
        correlation_id=clock.correlation_id,
        department=clock.department,
        threshold=milestone.threshold,
        resolution_due_at=clock.resolution_due_at,
        remaining_seconds=(clock.resolution_due_at - now).total_seconds(),
    )
