import asyncio
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from services.sla.domain import (
    Clock,
    Milestone,
    SlaPolicy,
    Targets,
    acknowledge,
    met_event,
    milestone_event,
    pause,
    reopen,
    resolve,
    resume,
    start_clock,
    started_event,
    transfer,
)
from services.sla.timers import ClockScheduler, Due
from shared.events import (
    Event,
    SlaBreached,
    SlaFirstResponseMissed,
    SlaWarning,
    TicketResolved,
    TicketRouted,
)
from tests.unit.samples import sample_routed

SUBMITTED = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)  # 07:30 next day in Asia/Shanghai
POLICY = SlaPolicy(Targets(timedelta(hours=24), timedelta(hours=2)), (0.9, 0.5, 0.75))
TICKET = "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM"


def routed(submitted_at: datetime = SUBMITTED, ticket: str = TICKET) -> TicketRouted:
    return sample_routed(submitted_at, ticket)


def names(clock: Clock) -> list[tuple[str, timedelta]]:
    return [(m.name, m.due_at - SUBMITTED) for m in clock.milestones()]


def test_the_clock_runs_from_submission_with_first_response_and_warnings() -> None:
    clock = start_clock(routed(), POLICY, partition=4)

    assert clock.resolution_due_at == SUBMITTED + timedelta(hours=24)
    assert names(clock) == [
        ("g1:first-response", timedelta(hours=2)),
        ("g1:warning-50", timedelta(hours=12)),
        ("g1:warning-75", timedelta(hours=18)),
        ("g1:warning-90", timedelta(hours=21.6)),
        ("g1:breached", timedelta(hours=24)),
    ]
    assert clock.partition == 4


def test_acknowledging_cancels_the_first_response_milestone() -> None:
    clock = acknowledge(start_clock(routed(), POLICY, 0), SUBMITTED)

    upcoming = clock.next_milestone()

    assert upcoming is not None
    assert upcoming.name == "g1:warning-50"


def test_a_pause_holds_the_clock_and_moves_the_due_time_by_its_length() -> None:
    clock = acknowledge(start_clock(routed(), POLICY, 0), SUBMITTED)
    paused = pause(clock, SUBMITTED + timedelta(hours=3))

    assert paused.next_milestone() is None
    assert paused.remaining(SUBMITTED + timedelta(hours=10)) == 21 * 3600
    resumed = resume(paused, SUBMITTED + timedelta(hours=8))
    assert resumed.resolution_due_at == SUBMITTED + timedelta(hours=29)
    upcoming = resumed.next_milestone()
    assert upcoming is not None
    assert upcoming.due_at == SUBMITTED + timedelta(hours=17)
    # Pausing twice or resuming what runs changes nothing.
    assert pause(paused, SUBMITTED + timedelta(hours=5)) == paused
    assert resume(resumed, SUBMITTED + timedelta(hours=9)) == resumed


def test_resolution_stops_the_clock_and_says_whether_in_time() -> None:
    clock = acknowledge(start_clock(routed(), POLICY, 0), SUBMITTED)
    trigger = TicketResolved(
        ticket_id=TICKET,
        correlation_id="c",
        department="tj-tax",
        actor={"role": "department", "id": "tj-tax"},
        resolution="done",
        occurred_at=SUBMITTED + timedelta(hours=23),
    )
    stopped = resolve(clock, trigger.occurred_at)

    assert stopped.next_milestone() is None
    met = met_event(stopped, trigger)
    assert met.in_time
    assert met.remaining_seconds == 3600
    late = resolve(clock, SUBMITTED + timedelta(hours=25))
    assert not met_event(
        late, trigger.model_copy(update={"occurred_at": SUBMITTED + timedelta(hours=25)})
    ).in_time


def test_reopening_starts_a_fresh_target_with_new_milestones() -> None:
    clock = start_clock(routed(), POLICY, 0).with_fired("g1:first-response")
    stopped = resolve(acknowledge(clock, SUBMITTED), SUBMITTED + timedelta(hours=5))
    reopened = reopen(stopped, SUBMITTED + timedelta(hours=30))

    assert reopened.generation == 2
    assert reopened.resolution_due_at == SUBMITTED + timedelta(hours=54)
    upcoming = reopened.next_milestone()
    assert upcoming is not None
    assert upcoming.name == "g2:warning-50"
    assert started_event(reopened).event_id != started_event(clock).event_id


def test_a_transfer_keeps_the_clock_and_changes_who_is_told() -> None:
    clock = start_clock(routed(), POLICY, 0)
    moved = transfer(clock, "tj-market")

    assert moved.resolution_due_at == clock.resolution_due_at
    warning = moved.milestones()[1]
    assert milestone_event(moved, warning, warning.due_at).department == "tj-market"


def test_each_milestone_says_what_it_means() -> None:
    clock = start_clock(routed(), POLICY, 0)
    first, warning, *_, breach = clock.milestones()

    missed = milestone_event(clock, first, first.due_at + timedelta(minutes=5))
    warned = milestone_event(clock, warning, warning.due_at + timedelta(seconds=2))
    breached = milestone_event(clock, breach, clock.resolution_due_at + timedelta(minutes=1))

    assert isinstance(missed, SlaFirstResponseMissed)
    assert missed.overdue_seconds == 300
    assert isinstance(warned, SlaWarning)
    assert warned.threshold == 0.5
    assert warned.remaining_seconds == 12 * 3600 - 2
    assert warned.event_id == Event.derived_id(TICKET, "sla", "g1:warning-50")
    assert isinstance(breached, SlaBreached)
    assert breached.overdue_seconds == 60
    assert breached.escalated_to == "park-supervision"


def test_thresholds_must_be_shares() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        SlaPolicy(Targets(timedelta(hours=1), timedelta(hours=1)), (0.5, 1.5))


class Recorder:
    def __init__(self, failures: int = 0) -> None:
        self.fired: list[tuple[str, str]] = []
        self.failures = failures

    async def __call__(self, due: list[Due]) -> list[Clock]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.fired.extend((each.clock.ticket_id[-4:], each.milestone.name) for each in due)
        return [each.clock.with_fired(each.milestone.name) for each in due]


def utc_now() -> datetime:
    return datetime.now(UTC)


def short_clock(ticket: str, partition: int = 0, offset_ms: int = 0) -> Clock:
    policy = SlaPolicy(Targets(timedelta(milliseconds=200), timedelta(milliseconds=100)), (0.75,))
    start = utc_now() + timedelta(milliseconds=offset_ms)
    return start_clock(routed(start, ticket), policy, partition)


async def run_for(scheduler: ClockScheduler[Due], seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def test_scheduler_fires_each_milestone_once_in_order() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(Due, recorder, utc_now)
    clock = short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0AAAA")
    scheduler.add(clock)
    scheduler.add(clock)  # a redelivery: held already

    await run_for(scheduler, 0.5)

    assert recorder.fired == [
        ("AAAA", "g1:first-response"),
        ("AAAA", "g1:warning-75"),
        ("AAAA", "g1:breached"),
    ]
    assert len(scheduler) == 0


async def test_overdue_milestones_fire_at_once_and_others_wait() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(Due, recorder, utc_now)
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0BBBB", offset_ms=-1000))
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0CCCC", offset_ms=60_000))

    await run_for(scheduler, 0.1)

    assert [name for ticket, name in recorder.fired if ticket == "BBBB"] == [
        "g1:first-response",
        "g1:warning-75",
        "g1:breached",
    ]
    assert all(ticket == "BBBB" for ticket, _ in recorder.fired)
    assert len(scheduler) == 1


async def test_a_changed_clock_fires_by_its_new_milestones() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(Due, recorder, utc_now)
    clock = acknowledge(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0GGGG"), utc_now())
    scheduler.add(clock)
    async with scheduler.locked(clock.ticket_id):
        scheduler.hold(resolve(clock, utc_now()))  # resolved before anything was due

    await run_for(scheduler, 0.4)

    assert recorder.fired == []


async def test_a_fire_is_staged_before_it_is_due_and_a_later_change_wins() -> None:
    staged: list[str] = []

    def stage(clock: Clock, milestone: Milestone) -> Due:
        staged.append(milestone.name)
        return Due(clock, milestone)

    recorder = Recorder()
    scheduler = ClockScheduler(stage, recorder, utc_now)
    clock = short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0LLLL", offset_ms=300)  # first response in 0.4 s
    scheduler.add(clock)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.1)
    assert (staged, recorder.fired) == (["g1:first-response"], [])

    async with scheduler.locked(clock.ticket_id):
        # Answered after its fire was staged: the staged fire must not go out.
        scheduler.hold(acknowledge(clock, utc_now()))
    await asyncio.sleep(0.8)
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task

    assert recorder.fired == [("LLLL", "g1:warning-75"), ("LLLL", "g1:breached")]


async def test_clocks_of_revoked_partitions_do_not_fire() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(Due, recorder, utc_now)
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0DDDD", partition=1))
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0EEEE", partition=2))

    scheduler.drop_partitions([1])
    await run_for(scheduler, 0.5)

    assert {ticket for ticket, _ in recorder.fired} == {"EEEE"}


async def test_a_failed_fire_is_retried_not_skipped() -> None:
    recorder = Recorder(failures=2)
    scheduler = ClockScheduler(Due, recorder, utc_now)
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0FFFF", offset_ms=-1000))

    await run_for(scheduler, 1.5)

    assert [name for _, name in recorder.fired] == [
        "g1:first-response",
        "g1:warning-75",
        "g1:breached",
    ]


async def test_an_unexpected_failure_of_one_clock_does_not_stop_the_others() -> None:
    fired: list[str] = []

    async def fire(due: list[Due]) -> list[Clock]:
        if any(each.clock.ticket_id.endswith("BAD0") for each in due):
            raise RuntimeError("a bug in one clock")
        fired.extend(each.clock.ticket_id[-4:] for each in due)
        return [each.clock.with_fired(each.milestone.name) for each in due]

    scheduler = ClockScheduler(Due, fire, utc_now)
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0BAD0", offset_ms=-1000))
    scheduler.add(short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0G00D", offset_ms=-1000))

    await run_for(scheduler, 1.5)

    assert fired.count("G00D") == 3
    assert scheduler.get("T-01M8M3WQ6WQ4ZQ3FGCHBD0BAD0") is None


@dataclass
class SealedForTest:
    clock: Clock
    due_at: datetime

    @property
    def ticket_id(self) -> str:
        return self.clock.ticket_id

    @property
    def partition(self) -> int:
        return self.clock.partition

    def open(self) -> Clock:
        return self.clock


async def test_an_adopted_clock_fires_by_the_policy_in_force_not_the_stored_time() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(Due, recorder, utc_now)
    clock = short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0HHHH", offset_ms=60_000)
    # Stored under an older policy that put it in the past; the clock now says a minute on.
    scheduler.adopt([SealedForTest(clock, utc_now() - timedelta(seconds=1))])

    await run_for(scheduler, 0.2)

    assert recorder.fired == []
    assert scheduler.get(clock.ticket_id) == clock


async def test_adopted_clocks_fire_when_due_and_are_opened_only_then() -> None:
    recorder = Recorder()
    scheduler = ClockScheduler(Due, recorder, utc_now)
    due = short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0JJJJ", offset_ms=-1000)
    later = short_clock("T-01M8M3WQ6WQ4ZQ3FGCHBD0KKKK", offset_ms=60_000)
    opened: list[str] = []

    class Counting(SealedForTest):
        def open(self) -> Clock:
            opened.append(self.ticket_id[-4:])
            return self.clock

    scheduler.adopt(Counting(c, c.first_response_due_at) for c in (due, later))
    await run_for(scheduler, 0.2)

    assert [name for _, name in recorder.fired] == [
        "g1:first-response",
        "g1:warning-75",
        "g1:breached",
    ]
    assert opened == ["JJJJ"]
    assert len(scheduler) == 1
