"""Calendars the SLA clock counts time in: the wall clock, or business hours.

A business calendar counts only working hours on working days in its time zone (Asia/Shanghai
by default), skipping public holidays and counting the make-up workdays (调休) that move a
weekend into the week. Pure: no clock is read; times are aware datetimes.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Calendar(Protocol):
    @property
    def name(self) -> str: ...

    def add(self, start: datetime, span: timedelta) -> datetime:
        """The moment `span` of counted time after `start`."""
        ...

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Counted time between two moments (negative if `end` is earlier)."""
        ...


@dataclass(frozen=True)
class WallClock:
    name: str = "wall"

    def add(self, start: datetime, span: timedelta) -> datetime:
        return start + span

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        return end - start


@dataclass(frozen=True)
class BusinessCalendar:
    name: str
    timezone: str = "Asia/Shanghai"
    opens: time = time(9, 0)
    closes: time = time(18, 0)
    workdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    """Weekdays that are working days, Monday = 0."""
    holidays: frozenset[date] = field(default_factory=frozenset)
    makeup_workdays: frozenset[date] = field(default_factory=frozenset)
    """Weekend days worked in exchange for a holiday (调休)."""

    def __post_init__(self) -> None:
        if self.opens >= self.closes:
            raise ValueError(f"calendar {self.name}: opens at {self.opens}, after closing")
        if not self.workdays and not self.makeup_workdays:
            raise ValueError(f"calendar {self.name}: no working days")

    def is_working_day(self, day: date) -> bool:
        if day in self.makeup_workdays:
            return True
        return day.weekday() in self.workdays and day not in self.holidays

    def add(self, start: datetime, span: timedelta) -> datetime:
        if span < timedelta(0):
            raise ValueError("a business calendar adds forward only")
        zone = ZoneInfo(self.timezone)
        moment = start.astimezone(zone)
        left = span
        for _ in range(3660):  # ten years of days: a bound, never reached by a sane target
            opening, closing = self._hours(moment.date(), zone)
            if self.is_working_day(moment.date()) and moment < closing:
                begin = max(moment, opening)
                if begin + left <= closing:
                    return (begin + left).astimezone(start.tzinfo)
                left -= closing - begin
            moment = datetime.combine(moment.date() + timedelta(days=1), time(0), zone)
        raise ValueError(f"calendar {self.name}: {span} does not fit in ten years")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        if end < start:
            return -self.elapsed(end, start)
        zone = ZoneInfo(self.timezone)
        total = timedelta(0)
        day = start.astimezone(zone).date()
        last = end.astimezone(zone).date()
        while day <= last:
            if self.is_working_day(day):
                opening, closing = self._hours(day, zone)
                begin, finish = max(start, opening), min(end, closing)
                if finish > begin:
                    total += finish - begin
            day += timedelta(days=1)
        return total

    def _hours(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        return datetime.combine(day, self.opens, zone), datetime.combine(day, self.closes, zone)
