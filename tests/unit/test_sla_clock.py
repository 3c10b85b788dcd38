import asyncio
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import pytest

from services.sla.domain import (
    BREACHED,
    Clock,
    Milestone,
    SlaPolicy,
    milestone_event,
    start_clock,
    started_event,
)
from services.sla.timers import ClockScheduler
from shared.events import Event, SlaBreached, SlaWarning, TicketRouted

SUBMITTED = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)  # 07:30 next day in Asia/Shanghai
POLICY = SlaPolicy(timedelta(hours=24), timedelta(hours=2), (0.9, 0.5, 0.75))


def routed(
    submitted_at: datetime = SUBMITTED, ticket: str = "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM"
) -> TicketRouted:
    return TicketRouted(
        ticket_id=ticket,
        correlation_id="c",
        department="tj-tax",
        reason="r",
        occurred_at=submitted_at + timedelta(minutes=3),
        submitted_at=submitted_at,
        resolution_due_at=submitted_at + timedelta(hours=24),
    )


def test_the_clock_runs_from_submission_with_warnings_in_order() -> None:
    clock = start_clock(routed(), POLICY, partition=4)

    assert clock.started_at == SUBMITTED
    assert clock.resolution_due_at == SUBMITTED + timedelta(hours=24)
    assert clock.first_response_due_at == SUBMITTED + timedelta(hours=2)
    assert [(m.name, m.due_at - SUBMITTED) for m in clock.milestones] == [
        ("warning-50", timedelta(hours=12)),
        ("warning-75", timedelta(hours=18)),
        ("warning-90", timedelta(hours=21.6)),
        (BREACHED, timedelta(hours=24)),
    ]
    assert clock.partition == 4


def test_fired_milestones_are_skipped() -> None:
    clock = start_clock(routed(), POLICY, 0).with_fired("warning-50").with_fired("warning-75")

    upcoming = clock.next_milestone()

    assert upcoming is not None
    assert upcoming.name == "warning-90"
    assert clock.with_fired("warning-90").with_fired(BREACHED).next_milestone() is None


def test_a_warning_tells_the_time_left() -> None:
    clock = start_clock(routed(), POLICY, 0)
    warning = clock.milestones[0]

    event = milestone_event(clock, warning, warning.due_at + timedelta(seconds=2))

    assert isinstance(event, SlaWarning)
    assert event.threshold == 0.5
    assert event.remaining_seconds == 12 * 3600 - 2
    assert event.event_id == Event.derived_id(clock.ticket_id, "sla", "warning-50")


def test_a_breach_tells_how_late_and_escalates() -> None:
    clock = start_clock(routed(), POLICY, 0)

    event = milestone_event(
        clock, clock.milestones[-1], clock.resolution_due_at + timedelta(minutes=1)
    )

    assert isinstance(event, SlaBreached)
    assert event.overdue_seconds == 60
    assert event.escalated_to == "park-supervision"
    assert event.department == "tj-tax"


def test_started_event_id_is_fixed_by_the_ticket() -> None:
    clock = start_clock(routed(), POLICY, 0)
    assert started_event(clock).event_id == started_event(clock).event_id


def test_thresholds_must_be_shares() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        SlaPolicy(timedelta(hours=1), timedelta(hours=1), (0.5, 1.5))


class Recorder:
    def __init__(self, failures: int = 0) -> None:
        self.fired: list[tuple[str, str]] = []
        self.failures = failures

    async def __call__(self, clock: Clock, milestone: Milestone) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.fired.append((clock.ticket_id[-4:], milestone.name))


def utc_now() -> datetime:
    return datetime.now(UTC)


def short_clock(ticket: str, partition: int = 0, offset_ms: int = 0) -> Clock:
    policy = SlaPolicy(timedelta(milliseconds=200), timedelta(milliseconds=100), (0.5, 0.75))
    start = utc_now() + timedelta(milliseconds=offset_ms)
    return start_clock(routed(start, ticket), policy, partition)


async def run_for(scheduler: ClockScheduler, seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def test_scheduler_fires_each_milestone_once_in_order() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(recorder, utc_now)
    clock = short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0AAAA")
    scheduler.add(clock)
    scheduler.add(clock)  # a redelivery: held already

    await run_for(scheduler, 0.5)

    assert recorder.fired == [("AAAA", "warning-50"), ("AAAA", "warning-75"), ("AAAA", BREACHED)]
    assert len(scheduler) == 0


async def test_overdue_milestones_fire_at_once_and_interleave_by_due_time() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(recorder, utc_now)
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0BBBB", offset_ms=-1000))
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0CCCC", offset_ms=60_000))

    await run_for(scheduler, 0.1)

    assert recorder.fired == [("BBBB", "warning-50"), ("BBBB", "warning-75"), ("BBBB", BREACHED)]
    assert len(scheduler) == 1


async def test_clocks_of_revoked_partitions_do_not_fire() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(recorder, utc_now)
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0DDDD", partition=1))
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0EEEE", partition=2))

    scheduler.drop_partitions([1])
    await run_for(scheduler, 0.5)

    assert {ticket for ticket, _ in recorder.fired} == {"EEEE"}


async def test_a_failed_fire_is_retried_not_skipped() -> None:
    recorder = Recorder(failures=2)
    scheduler = ClockScheduler(recorder, utc_now)
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0FFFF", offset_ms=-1000))

    await run_for(scheduler, 1.5)

    assert recorder.fired == [("FFFF", "warning-50"), ("FFFF", "warning-75"), ("FFFF", BREACHED)]
