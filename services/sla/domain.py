"""The 24-hour clock of one ticket: when it warns, when it breaches, and what it says then.

The clock runs from submission, not routing: the promise is to the enterprise. It pauses while
the ticket awaits the enterprise (the due time moves by the pause), keeps running through a
transfer, stops at resolution, and a reopened ticket gets a fresh target: a new generation of
the clock, whose milestones are new events.

Pure: the caller passes the time; nothing here reads a clock, Kafka or a store.
"""

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, cast

from services.sla.calendar import BusinessCalendar, Calendar, WallClock
from shared.departments import SUPERVISION
from shared.events import (
    Category,
    Event,
    Priority,
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
class Targets:
    resolution: timedelta
    first_response: timedelta
    calendar: str = "wall"


@dataclass(frozen=True)
class SlaPolicy:
    """Targets for every ticket, with overrides by category, priority or both, and the
    calendars they count in."""

    default: Targets
    warning_thresholds: tuple[float, ...] = (0.5, 0.75, 0.9)
    overrides: Mapping[tuple[Category | None, Priority | None], Targets] = field(
        default_factory=dict
    )
    calendars: Mapping[str, Calendar] = field(default_factory=lambda: {"wall": WallClock()})

    def __post_init__(self) -> None:
        if not all(0 < threshold < 1 for threshold in self.warning_thresholds):
            raise ValueError("warning thresholds are shares of the target, between 0 and 1")
        for targets in (self.default, *self.overrides.values()):
            self.calendar(targets.calendar)
            if targets.resolution <= timedelta(0) or targets.first_response <= timedelta(0):
                raise ValueError("targets must be positive")

    def targets_for(self, category: Category, priority: Priority) -> Targets:
        """The most specific targets: category and priority, then either, then the default."""
        for key in ((category, priority), (category, None), (None, priority)):
            if key in self.overrides:
                return self.overrides[key]
        return self.default

    def calendar(self, name: str) -> Calendar:
        try:
            return self.calendars[name]
        except KeyError:
            raise ValueError(f"unknown calendar {name!r}") from None


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


NOT_WORKED_OUT = object()


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
    calendar: Calendar = field(default_factory=WallClock)
    category: Category = Category.DAILY_LIFE
    priority: Priority = Priority.NORMAL
    generation: int = 1
    paused_for: timedelta = timedelta(0)
    """Counted time spent paused, in the clock's calendar."""
    paused_at: datetime | None = None
    acknowledged_at: datetime | None = None
    stopped_at: datetime | None = None
    rating: int | None = None
    fired: frozenset[str] = field(default_factory=frozenset)
    applied: frozenset[str] = field(default_factory=frozenset)
    """Ids of the ticket events already applied: a redelivered one changes nothing."""
    version: int = 0
    """How many times this clock has been stored; each change is stored as the next version."""
    _next: object = field(default=NOT_WORKED_OUT, init=False, repr=False, compare=False)
    """The next milestone, worked out once per clock: it is asked for on every fire, store and
    schedule, and a clock never changes (a change is a new clock, which works it out anew)."""

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def resolution_due_at(self) -> datetime:
        return self.calendar.add(self.started_at, self.resolution_target + self.paused_for)

    @property
    def first_response_due_at(self) -> datetime:
        return self.calendar.add(self.started_at, self.first_response_target)

    def milestones(self) -> tuple[Milestone, ...]:
        return tuple(Milestone(*due) for due in self._due())

    def next_milestone(self) -> Milestone | None:
        """What fires next; nothing while stopped, and only a first response while paused."""
        if self._next is NOT_WORKED_OUT:
            object.__setattr__(self, "_next", self._work_out_next())
        return cast(Milestone | None, self._next)

    def _work_out_next(self) -> Milestone | None:
        if self.stopped_at is not None:
            return None
        for name, kind, due_at, threshold in self._due():
            if name in self.fired:
                continue
            if self.paused_at is not None and kind is not Kind.FIRST_RESPONSE:
                continue
            return Milestone(name, kind, due_at, threshold)
        return None

    def _due(self) -> list[tuple[str, Kind, datetime, float | None]]:
        """Every milestone of this generation as plain tuples, soonest first: this runs on
        every fire and change of every clock, so it builds no more than it must."""
        prefix = f"g{self.generation}:"
        found: list[tuple[str, Kind, datetime, float | None]] = []
        if not self.acknowledged and self.generation == 1:
            found.append(
                (prefix + "first-response", Kind.FIRST_RESPONSE, self.first_response_due_at, None)
            )
        add = self.calendar.add
        for threshold in self.thresholds:
            due_at = add(self.started_at, self.resolution_target * threshold + self.paused_for)
            found.append((prefix + _warning_name(threshold), Kind.WARNING, due_at, threshold))
        found.append((prefix + "breached", Kind.BREACH, self.resolution_due_at, None))
        found.sort(key=_due_at)
        return found

    def next_version(self) -> "Clock":
        return replace(self, version=self.version + 1)

    def with_fired(self, name: str) -> "Clock":
        return replace(self, fired=self.fired | {name})

    def with_applied(self, event: Event) -> "Clock":
        return replace(self, applied=self.applied | {str(event.event_id)})

    def remaining(self, now: datetime) -> float:
        """Counted seconds left (negative when overdue); frozen while paused."""
        return self.calendar.elapsed(self.paused_at or now, self.resolution_due_at).total_seconds()


def _due_at(due: tuple[str, Kind, datetime, float | None]) -> datetime:
    return due[2]


@cache
def _warning_name(threshold: float) -> str:
    return f"{Kind.WARNING.value}-{round(threshold * 100)}"


def start_clock(event: TicketRouted, policy: SlaPolicy, partition: int) -> Clock:
    targets = policy.targets_for(event.category, event.priority)
    return Clock(
        ticket_id=event.ticket_id,
        correlation_id=event.correlation_id,
        department=event.department,
        partition=partition,
        started_at=event.submitted_at,
        resolution_target=targets.resolution,
        first_response_target=targets.first_response,
        thresholds=tuple(sorted(policy.warning_thresholds)),
        calendar=policy.calendar(targets.calendar),
        category=event.category,
        priority=event.priority,
    )


# --- what the ticket's lifecycle does to the clock -----------------------------------------


def acknowledge(clock: Clock, at: datetime) -> Clock:
    if clock.acknowledged_at is not None:
        return clock
    return replace(clock, acknowledged_at=at)


def pause(clock: Clock, at: datetime) -> Clock:
    if clock.paused_at is not None or clock.stopped_at is not None:
        return clock
    return replace(clock, paused_at=at)


def resume(clock: Clock, at: datetime) -> Clock:
    if clock.paused_at is None:
        return clock
    paused = clock.calendar.elapsed(clock.paused_at, at)
    return replace(clock, paused_at=None, paused_for=clock.paused_for + paused)


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
        acknowledged_at=clock.acknowledged_at or at,
    )


def rate(clock: Clock, rating: int) -> Clock:
    return replace(clock, rating=rating)


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


def _reply(clock: Clock, trigger: Event, said: str) -> dict[str, Any]:
    """The envelope of what the clock says in answer to a ticket event: an id fixed by that
    event, so that a redelivery says it again as the same event."""
    return {
        "event_id": Event.derived_id(trigger.event_id, said),
        "occurred_at": trigger.occurred_at,
        "ticket_id": clock.ticket_id,
        "correlation_id": trigger.correlation_id,
        "department": clock.department,
    }


def paused_event(clock: Clock, trigger: Event) -> SlaPaused:
    return SlaPaused(
        **_reply(clock, trigger, "sla.paused"),
        remaining_seconds=clock.remaining(trigger.occurred_at),
    )


def resumed_event(clock: Clock, trigger: Event) -> SlaResumed:
    return SlaResumed(
        **_reply(clock, trigger, "sla.resumed"),
        resolution_due_at=clock.resolution_due_at,
        remaining_seconds=clock.remaining(trigger.occurred_at),
    )


def met_event(clock: Clock, trigger: Event) -> SlaMet:
    resolved_at = clock.stopped_at or trigger.occurred_at
    remaining = clock.calendar.elapsed(resolved_at, clock.resolution_due_at).total_seconds()
    return SlaMet(
        **_reply(clock, trigger, "sla.met"),
        resolution_due_at=clock.resolution_due_at,
        resolved_at=resolved_at,
        in_time=remaining >= 0,
        remaining_seconds=remaining,
    )


# --- the policy file ------------------------------------------------------------------------


def load_sla_policy(path: Path) -> SlaPolicy:
    """An SLA policy from TOML; see policy.example.toml beside this file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        calendars: dict[str, Calendar] = {"wall": WallClock()}
        for name, entry in document.get("calendar", {}).items():
            calendars[name] = BusinessCalendar(
                name=name,
                timezone=entry.get("timezone", "Asia/Shanghai"),
                opens=time.fromisoformat(entry.get("opens", "09:00")),
                closes=time.fromisoformat(entry.get("closes", "18:00")),
                workdays=frozenset(day - 1 for day in entry.get("workdays", [1, 2, 3, 4, 5])),
                holidays=frozenset(date.fromisoformat(d) for d in entry.get("holidays", [])),
                makeup_workdays=frozenset(
                    date.fromisoformat(d) for d in entry.get("makeup_workdays", [])
                ),
            )
        overrides = {}
        for entry in document.get("target", []):
            category = Category(entry["category"]) if "category" in entry else None
            priority = Priority(entry["priority"]) if "priority" in entry else None
            overrides[(category, priority)] = _targets(entry)
        return SlaPolicy(
            default=_targets(document["default"]),
            warning_thresholds=tuple(document.get("warnings", (0.5, 0.75, 0.9))),
            overrides=overrides,
            calendars=calendars,
        )
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a usable SLA policy: {exc}") from None


def _targets(entry: dict[str, Any]) -> Targets:
    return Targets(
        resolution=timedelta(hours=float(entry["resolution_hours"])),
        first_response=timedelta(hours=float(entry["first_response_hours"])),
        calendar=entry.get("calendar", "wall"),
    )


# --- reports --------------------------------------------------------------------------------

AT_RISK_SHARE = 0.75


@dataclass
class Figures:
    """The three rates hotline supervisors are measured by, and where tickets stand.

    - response rate: first responses (acknowledgements) given in time, over tickets whose first
      response was given or is due;
    - resolution rate: resolutions in time, over tickets resolved or past their due time;
    - satisfaction rate: ratings of 4 or 5, over rated tickets;
    - open: not resolved; at risk: open and past 75 % of the target, not yet breached;
      breached: past the due time unresolved, or resolved late.
    A reopened ticket is judged by its current target.
    """

    tickets: int = 0
    responses_due: int = 0
    responded_in_time: int = 0
    resolutions_due: int = 0
    resolved_in_time: int = 0
    rated: int = 0
    satisfied: int = 0
    open: int = 0
    at_risk: int = 0
    breached: int = 0

    @property
    def response_rate(self) -> float | None:
        return self.responded_in_time / self.responses_due if self.responses_due else None

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved_in_time / self.resolutions_due if self.resolutions_due else None

    @property
    def satisfaction_rate(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None

    def count(self, clock: Clock, now: datetime) -> None:
        self.tickets += 1
        first_due = clock.first_response_due_at
        if clock.acknowledged_at is not None or now >= first_due:
            self.responses_due += 1
            if clock.acknowledged_at is not None and clock.acknowledged_at <= first_due:
                self.responded_in_time += 1
        late = is_late(clock, now)
        if clock.stopped_at is not None or now >= clock.resolution_due_at:
            self.resolutions_due += 1
            if clock.stopped_at is not None and not late:
                self.resolved_in_time += 1
        if clock.rating is not None:
            self.rated += 1
            self.satisfied += clock.rating >= 4
        if clock.stopped_at is None:
            self.open += 1
            self.at_risk += is_at_risk(clock, now)
        self.breached += late


def is_late(clock: Clock, now: datetime) -> bool:
    """Past the due time unresolved, or resolved after it."""
    return (clock.stopped_at or now) > clock.resolution_due_at


def is_at_risk(clock: Clock, now: datetime) -> bool:
    """Open, past 75 % of its target (not counting pauses), and not yet late."""
    if clock.stopped_at is not None or is_late(clock, now):
        return False
    risky = clock.calendar.add(
        clock.started_at, clock.resolution_target * AT_RISK_SHARE + clock.paused_for
    )
    return (clock.paused_at or now) >= risky


def needing_attention(clocks: list[Clock], now: datetime) -> tuple[list[Clock], list[Clock]]:
    """The open tickets at risk, soonest due first, and the open tickets breached, most
    recently breached first: what a supervisor can still save, then what just went wrong."""
    open_clocks = sorted(
        (clock for clock in clocks if clock.stopped_at is None),
        key=lambda clock: clock.resolution_due_at,
    )
    at_risk = [clock for clock in open_clocks if is_at_risk(clock, now)]
    breached = [clock for clock in reversed(open_clocks) if is_late(clock, now)]
    return at_risk, breached


def report(clocks: list[Clock], now: datetime) -> dict[str, Figures]:
    """Figures per department (the one that has the ticket now) and `overall`."""
    figures: dict[str, Figures] = {"overall": Figures()}
    for clock in clocks:
        figures["overall"].count(clock, now)
        figures.setdefault(clock.department, Figures()).count(clock, now)
    return dict(sorted(figures.items()))
