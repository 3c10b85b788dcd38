"""Business calendars in Asia/Shanghai time, policy targets, and the report's arithmetic."""

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.sla.calendar import BusinessCalendar, WallClock
from services.sla.domain import (
    Clock,
    SlaPolicy,
    Targets,
    acknowledge,
    load_sla_policy,
    needing_attention,
    pause,
    rate,
    report,
    resolve,
    resume,
)
from shared.events import Category, Priority

SHANGHAI = ZoneInfo("Asia/Shanghai")
# National Day 2026: 1-7 October off, Sunday 27 September and Saturday 10 October worked.
GOLDEN_WEEK = frozenset(date(2026, 10, d) for d in range(1, 8))
MAKEUP = frozenset({date(2026, 9, 27), date(2026, 10, 10)})
OFFICE = BusinessCalendar("office", holidays=GOLDEN_WEEK, makeup_workdays=MAKEUP)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), SHANGHAI)


def test_the_wall_clock_counts_every_second() -> None:
    start = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    assert WallClock().add(start, timedelta(hours=2)) == start + timedelta(hours=2)
    assert WallClock().elapsed(start, start - timedelta(hours=1)) == -timedelta(hours=1)


def test_business_hours_carry_over_midnight_to_the_next_morning() -> None:
    friday_evening = at(date(2026, 11, 27), 17)  # a Friday, 17:00 in Shanghai
    due = OFFICE.add(friday_evening, timedelta(hours=2))
    assert due == at(date(2026, 11, 30), 10)  # Monday 10:00: the weekend does not count
    assert OFFICE.elapsed(friday_evening, due) == timedelta(hours=2)


def test_a_ticket_opened_at_night_starts_counting_at_opening_time() -> None:
    night = at(date(2026, 12, 1), 23, 30)
    assert OFFICE.add(night, timedelta(hours=1)) == at(date(2026, 12, 2), 10)


def test_holidays_are_skipped_and_makeup_workdays_count() -> None:
    before_holiday = at(date(2026, 9, 30), 17)  # Wednesday before National Day
    due = OFFICE.add(before_holiday, timedelta(hours=3))
    # 1 hour on the 30th, then 1-7 October off, then the 8th.
    assert due == at(date(2026, 10, 8), 11)
    assert OFFICE.is_working_day(date(2026, 9, 27))  # a Sunday, worked
    assert not OFFICE.is_working_day(date(2026, 10, 5))  # a Monday, off
    saturday_start = at(date(2026, 10, 10), 9)  # the make-up Saturday
    assert OFFICE.add(saturday_start, timedelta(hours=9)) == at(date(2026, 10, 10), 18)


def test_times_are_returned_in_the_zone_they_came_in() -> None:
    start = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    due = OFFICE.add(start, timedelta(hours=1))
    assert due.tzinfo == UTC
    assert due == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def office_clock(started_at: datetime, hours: float, thresholds: tuple[float, ...]) -> Clock:
    """A clock that counts office hours, with a resolution target of `hours` of them."""
    return Clock(
        ticket_id="T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM",
        correlation_id="c",
        department="tj-tax",
        partition=0,
        started_at=started_at,
        resolution_target=timedelta(hours=hours),
        first_response_target=timedelta(hours=2),
        thresholds=thresholds,
        calendar=OFFICE,
    )


def test_a_paused_business_clock_moves_its_due_by_business_time_only() -> None:
    clock = office_clock(at(date(2026, 11, 30), 9), 8, (0.5,))
    assert clock.resolution_due_at == at(date(2026, 11, 30), 17)
    # Paused from 16:00 Monday to 10:00 Tuesday: 3 business hours (16-18, 9-10), not 18.
    paused = pause(clock, at(date(2026, 11, 30), 16))
    resumed = resume(paused, at(date(2026, 12, 1), 10))
    assert resumed.paused_for == timedelta(hours=3)
    assert resumed.resolution_due_at == at(date(2026, 12, 1), 11)  # 9 h Monday, 2 h Tuesday


def test_warnings_count_business_time_like_the_breach() -> None:
    # 16 business hours from Friday 14:00 before the golden week: Friday 14-18, Sunday 27th
    # (a make-up workday) 9-18, then Monday 28th 9-12.
    clock = office_clock(at(date(2026, 9, 25), 14), 16, (0.25, 0.5))
    due = {m.name: m.due_at for m in clock.milestones()}
    assert due["g1:warning-25"] == at(date(2026, 9, 25), 18)
    assert due["g1:warning-50"] == at(date(2026, 9, 27), 13)
    assert due["g1:breached"] == at(date(2026, 9, 28), 12)


def test_a_bad_calendar_is_refused() -> None:
    with pytest.raises(ValueError, match="after closing"):
        BusinessCalendar("upside-down", opens=time(18), closes=time(9))


def test_targets_by_category_and_priority_most_specific_first(tmp_path: Path) -> None:
    policy_file = tmp_path / "sla.toml"
    policy_file.write_text("""
warnings = [0.5, 0.9]
[default]
resolution_hours = 24
first_response_hours = 2
[[target]]
priority = "urgent"
resolution_hours = 8
first_response_hours = 0.5
[[target]]
category = "administrative"
resolution_hours = 40
first_response_hours = 4
calendar = "office"
[[target]]
category = "production"
priority = "urgent"
resolution_hours = 4
first_response_hours = 0.25
[calendar.office]
opens = "09:00"
closes = "17:30"
holidays = ["2026-10-01"]
""")
    policy = load_sla_policy(policy_file)

    assert policy.targets_for(Category.PRODUCTION, Priority.URGENT).resolution == timedelta(hours=4)
    assert policy.targets_for(Category.DAILY_LIFE, Priority.URGENT).resolution == timedelta(hours=8)
    administrative = policy.targets_for(Category.ADMINISTRATIVE, Priority.NORMAL)
    assert administrative.resolution == timedelta(hours=40)
    assert policy.calendar(administrative.calendar).name == "office"
    assert policy.targets_for(Category.DAILY_LIFE, Priority.NORMAL).calendar == "wall"
    assert policy.warning_thresholds == (0.5, 0.9)


def test_a_policy_naming_an_unknown_calendar_is_refused(tmp_path: Path) -> None:
    policy_file = tmp_path / "sla.toml"
    policy_file.write_text(
        '[default]\nresolution_hours = 1\nfirst_response_hours = 1\ncalendar = "lunar"\n'
    )
    with pytest.raises(ValueError, match="unknown calendar 'lunar'"):
        load_sla_policy(policy_file)
    with pytest.raises(ValueError, match="positive"):
        SlaPolicy(Targets(timedelta(0), timedelta(hours=1)))


START = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def ticket(n: int, department: str = "tj-tax") -> Clock:
    return Clock(
        ticket_id=f"T-{n:026d}",
        correlation_id="c",
        department=department,
        partition=0,
        started_at=START,
        resolution_target=timedelta(hours=24),
        first_response_target=timedelta(hours=2),
        thresholds=(0.5, 0.75, 0.9),
    )


def test_the_report_counts_rates_and_states_by_department() -> None:
    now = START + timedelta(hours=30)
    clocks = [
        # in time all the way, rated 5
        rate(
            resolve(acknowledge(ticket(1), START + timedelta(hours=1)), START + timedelta(hours=3)),
            5,
        ),
        # late first response, resolved in time, rated 3
        rate(
            resolve(
                acknowledge(ticket(2), START + timedelta(hours=3)), START + timedelta(hours=20)
            ),
            3,
        ),
        # acknowledged, never resolved: breached
        acknowledge(ticket(3), START + timedelta(minutes=5)),
        # never acknowledged, at another department: breached, response missed
        ticket(4, "tj-market"),
        # resolved late
        resolve(acknowledge(ticket(5), START + timedelta(hours=1)), START + timedelta(hours=26)),
    ]

    figures = report(clocks, now)

    overall, tax = figures["overall"], figures["tj-tax"]
    assert (overall.tickets, tax.tickets, figures["tj-market"].tickets) == (5, 4, 1)
    assert (overall.responded_in_time, overall.responses_due) == (3, 5)
    assert (overall.resolved_in_time, overall.resolutions_due) == (2, 5)
    assert (overall.satisfied, overall.rated) == (1, 2)
    assert overall.satisfaction_rate == 0.5
    assert (overall.open, overall.breached, overall.at_risk) == (2, 3, 0)
    assert tax.response_rate == 3 / 4


def test_at_risk_is_open_past_three_quarters_and_not_yet_breached() -> None:
    figures = report([ticket(1), acknowledge(ticket(2), START)], START + timedelta(hours=19))
    assert figures["overall"].at_risk == 2
    assert figures["overall"].breached == 0
    assert figures["overall"].resolutions_due == 0
    assert report([ticket(1)], START + timedelta(hours=17))["overall"].at_risk == 0


def test_the_board_lists_open_tickets_at_risk_soonest_first_and_breached_latest_first() -> None:
    def started(n: int, hours_ago: float) -> Clock:
        return replace(ticket(n), started_at=START - timedelta(hours=hours_ago))

    clocks = [
        started(1, 19),  # 79 % used: at risk
        started(2, 22),  # 92 %: at risk, due sooner
        started(3, 25),  # breached an hour ago
        started(4, 30),  # breached six hours ago
        resolve(started(5, 30), START),  # resolved late: breached, but no longer open
        resolve(started(6, 20), START),  # resolved in time
        started(7, 10),  # 42 %: fine
    ]

    at_risk, breached = needing_attention(clocks, START)

    assert [c.ticket_id for c in at_risk] == [ticket(2).ticket_id, ticket(1).ticket_id]
    assert [c.ticket_id for c in breached] == [ticket(3).ticket_id, ticket(4).ticket_id]
    figures = report(clocks, START)["overall"]
    assert (figures.at_risk, figures.breached) == (2, 3)  # the report counts the late one too


def test_the_shipped_example_policy_loads_and_means_what_it_says() -> None:
    example = Path(__file__).resolve().parents[2] / "services" / "sla" / "policy.example.toml"
    policy = load_sla_policy(example)

    urgent_production = policy.targets_for(Category.PRODUCTION, Priority.URGENT)
    assert urgent_production.resolution == timedelta(hours=4)
    office = policy.calendar(policy.targets_for(Category.ADMINISTRATIVE, Priority.NORMAL).calendar)
    assert isinstance(office, BusinessCalendar)
    assert not office.is_working_day(date(2026, 10, 1))
    assert office.is_working_day(date(2026, 10, 10))  # a make-up Saturday
