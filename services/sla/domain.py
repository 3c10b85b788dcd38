"""The 24-hour clock of one ticket: when it warns, when it breaches, and what it says then.

The clock runs from submission, not routing: the promise is to the enterprise. It pauses while
the ticket awaits the enterprise (the due time moves by the pause), keeps running through a
transfer, stops at resolution, and a reopened ticket gets a fresh target: a new generation of
the clock, whose milestones are new events.

Pure: the caller passes the time; nothing here reads a clock, Kafka or a store.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.departments import SUPERVISION
from shared.events import (
    Event,
    SlaBreached,
    SlaFirstResponseMissed,
    SlaMet,
    SlaPaused,
    SlaResumed,
    SlaStarted,
    SlaWarning,
    TicketRouted,
)


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    resolution_target: timedelta
    first_response_target: timedelta
    warning_thresholds: tuple[float, ...]

    def __post_init__(self) -> None:
        if not all(0 < threshold < 1 for threshold in self.warning_thresholds):
            raise ValueError("warning thresholds are shares of the target, between 0 and 1")


class Kind(StrEnum):
    FIRST_RESPONSE = "first-response"
    WARNING = "warning"
    BREACH = "breached"


@dataclass(frozen=True, slots=True)
class Milestone:
    name: str
    """Unique within the ticket: generation and kind, e.g. `g1:warning-50`."""
    kind: Kind
    due_at: datetime
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Clock:
    ticket_id: str
    correlation_id: str
    department: str
    partition: int
    started_at: datetime
    resolution_target: timedelta
    first_response_target: timedelta
    thresholds: tuple[float, ...]
    generation: int = 1
    paused_for: timedelta = timedelta(0)
    paused_at: datetime | None = None
    acknowledged: bool = False
    stopped_at: datetime | None = None
    fired: frozenset[str] = field(default_factory=frozenset)
    applied: frozenset[str] = field(default_factory=frozenset)
    """Ids of the ticket events already applied: a redelivered one changes nothing."""

    @property
    def resolution_due_at(self) -> datetime:
        return self.started_at + self.resolution_target + self.paused_for

    @property
    def first_response_due_at(self) -> datetime:
        return self.started_at + self.first_response_target

    def milestones(self) -> tuple[Milestone, ...]:
        prefix = f"g{self.generation}:"
        found = []
        if not self.acknowledged and self.generation == 1:
            found.append(
                Milestone(
                    prefix + Kind.FIRST_RESPONSE, Kind.FIRST_RESPONSE, self.first_response_due_at
                )
            )
        for threshold in sorted(self.thresholds):
            found.append(
                Milestone(
                    f"{prefix}{Kind.WARNING}-{round(threshold * 100)}",
                    Kind.WARNING,
                    self.started_at + self.resolution_target * threshold + self.paused_for,
                    threshold,
                )
            )
        found.append(Milestone(prefix + Kind.BREACH, Kind.BREACH, self.resolution_due_at))
        return tuple(sorted(found, key=lambda m: m.due_at))

    def next_milestone(self) -> Milestone | None:
        """What fires next; nothing while stopped, and only a first response while paused."""
        if self.stopped_at is not None:
            return None
        for milestone in self.milestones():
            if milestone.name in self.fired:
                continue
            if self.paused_at is not None and milestone.kind is not Kind.FIRST_RESPONSE:
                continue
            return milestone
        return None

    def with_fired(self, name: str) -> "Clock":
        return replace(self, fired=self.fired | {name})

    def with_applied(self, event: Event) -> "Clock":
        return replace(self, applied=self.applied | {str(event.event_id)})

    def remaining(self, now: datetime) -> float:
        end = self.paused_at or now
        return (self.resolution_due_at - end).total_seconds()


def start_clock(event: TicketRouted, policy: SlaPolicy, partition: int) -> Clock:
    return Clock(
        ticket_id=event.ticket_id,
        correlation_id=event.correlation_id,
        department=event.department,
        partition=partition,
        started_at=event.submitted_at,
        resolution_target=policy.resolution_target,
        first_response_target=policy.first_response_target,
        thresholds=tuple(sorted(policy.warning_thresholds)),
    )


# --- what the ticket's lifecycle does to the clock -----------------------------------------


def acknowledge(clock: Clock) -> Clock:
    return replace(clock, acknowledged=True)


def pause(clock: Clock, at: datetime) -> Clock:
    if clock.paused_at is not None or clock.stopped_at is not None:
        return clock
    return replace(clock, paused_at=at)


def resume(clock: Clock, at: datetime) -> Clock:
    if clock.paused_at is None:
        return clock
    return replace(clock, paused_at=None, paused_for=clock.paused_for + (at - clock.paused_at))


def resolve(clock: Clock, at: datetime) -> Clock:
    return replace(resume(clock, at), stopped_at=at)


def reopen(clock: Clock, at: datetime) -> Clock:
    """A fresh target from now; the first response was given already."""
    return replace(
        clock,
        generation=clock.generation + 1,
        started_at=at,
        paused_for=timedelta(0),
        paused_at=None,
        stopped_at=None,
        acknowledged=True,
    )


def transfer(clock: Clock, department: str) -> Clock:
    """The clock keeps running; what it says from now on goes to the new department."""
    return replace(clock, department=department)


# --- what the clock says -------------------------------------------------------------------


def started_event(clock: Clock) -> SlaStarted:
    return SlaStarted(
        event_id=Event.derived_id(clock.ticket_id, "sla.started", clock.generation),
        ticket_id=clock.ticket_id,
        correlation_id=clock.correlation_id,
        department=clock.department,
        started_at=clock.started_at,
        resolution_due_at=clock.resolution_due_at,
        first_response_due_at=clock.first_response_due_at,
    )


def milestone_event(
    clock: Clock, milestone: Milestone, now: datetime
) -> SlaWarning | SlaBreached | SlaFirstResponseMissed:
    """The event a milestone fires, with an id fixed by ticket and milestone: a re-fire after a
    crash or a rebalance repeats the same event, which consumers recognise."""
    common = {
        "event_id": Event.derived_id(clock.ticket_id, "sla", milestone.name),
        "occurred_at": now,
        "ticket_id": clock.ticket_id,
        "correlation_id": clock.correlation_id,
        "department": clock.department,
    }
    if milestone.kind is Kind.FIRST_RESPONSE:
        return SlaFirstResponseMissed(
            **common,
            first_response_due_at=clock.first_response_due_at,
            overdue_seconds=max(0.0, (now - clock.first_response_due_at).total_seconds()),
        )
    if milestone.kind is Kind.BREACH:
        return SlaBreached(
            **common,
            escalated_to=SUPERVISION,
            resolution_due_at=clock.resolution_due_at,
            overdue_seconds=max(0.0, (now - clock.resolution_due_at).total_seconds()),
        )
    assert milestone.threshold is not None
    return SlaWarning(
        **common,
        threshold=milestone.threshold,
        resolution_due_at=clock.resolution_due_at,
        remaining_seconds=clock.remaining(now),
    )


def paused_event(clock: Clock, trigger: Event) -> SlaPaused:
    return SlaPaused(
        event_id=Event.derived_id(trigger.event_id, "sla.paused"),
        occurred_at=trigger.occurred_at,
        ticket_id=clock.ticket_id,
        correlation_id=trigger.correlation_id,
        department=clock.department,
        remaining_seconds=clock.remaining(trigger.occurred_at),
    )


def resumed_event(clock: Clock, trigger: Event) -> SlaResumed:
    return SlaResumed(
        event_id=Event.derived_id(trigger.event_id, "sla.resumed"),
        occurred_at=trigger.occurred_at,
        ticket_id=clock.ticket_id,
        correlation_id=trigger.correlation_id,
        department=clock.department,
        resolution_due_at=clock.resolution_due_at,
        remaining_seconds=clock.remaining(trigger.occurred_at),
    )


def met_event(clock: Clock, trigger: Event) -> SlaMet:
    resolved_at = clock.stopped_at or trigger.occurred_at
    remaining = (clock.resolution_due_at - resolved_at).total_seconds()
    return SlaMet(
        event_id=Event.derived_id(trigger.event_id, "sla.met"),
        occurred_at=trigger.occurred_at,
        ticket_id=clock.ticket_id,
        correlation_id=trigger.correlation_id,
        department=clock.department,
        resolution_due_at=clock.resolution_due_at,
        resolved_at=resolved_at,
        in_time=remaining >= 0,
        remaining_seconds=remaining,
    )
