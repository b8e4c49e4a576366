"""Cron expressions in a time zone: checked with a message naming the field, and the times
they name, in UTC.

Five fields, as crontab(5) has them: minute, hour, day of month, month, day of week (names
such as ``MON`` and ``JAN``, ranges, lists and steps; ``L`` and ``#`` as cronsim takes them).
Times are computed in the schedule's time zone, so ``0 3 * * *`` in ``Europe/Paris`` is 03:00
Paris time all year round. Across a daylight-saving change the rules are Debian cron's
(cronsim follows them): a time that does not exist that day (02:30 when the clocks jump from
02:00 to 03:00) fires at the first minute that does; a time that happens twice (02:30 when
they fall back) fires once; an expression whose minute or hour field starts with ``*``
(``*/5 * * * *``) keeps its interval in real time through the change.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
RANGES = ("0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-7 or SUN-SAT")
# What ``min_interval_s`` looks at: the fires of the next eight days, at most this many.
_INTERVAL_SAMPLE = 20_000
_INTERVAL_SPAN = timedelta(days=8)
MAX_EXPRESSION = 200  # characters


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Paris``, ``UTC``); CronError naming it if the
    system's zone database does not have it."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise CronError("timezone", f"{name!r} is not an IANA time zone name (e.g. Europe/Paris)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            "timezone", f"{name!r} is not an IANA time zone name (e.g. Europe/Paris)"
        ) from None


@dataclass(frozen=True, slots=True)
class Cron:
    """A checked expression and the zone its times are in."""

    expression: str
    tz: ZoneInfo

    @classmethod
    def parse(cls, expression: str, timezone: str) -> Cron:
        """The expression, checked; CronError naming the field (``cron`` or ``timezone``)
        and, in the message, which of the five cron fields is wrong and why."""
        tz = zone(timezone)
        parts = expression.split()
        if len(expression) > MAX_EXPRESSION:
            raise CronError("cron", f"is longer than {MAX_EXPRESSION} characters")
        if len(parts) != len(FIELDS):
            raise CronError(
                "cron",
                f"has {len(parts)} field(s); a cron expression has 5: minute hour "
                "day-of-month month day-of-week (e.g. '*/5 * * * *')",
            )
        try:
            CronSim(" ".join(parts), datetime(2026, 1, 1, tzinfo=tz))
        except CronSimError as error:
            raise CronError("cron", _field_problem(parts, str(error), tz)) from None
        cron = cls(" ".join(parts), tz)
        if cron.next_after(datetime(2026, 1, 1, tzinfo=UTC)) is None:
            raise CronError("cron", f"{cron.expression!r} names no time that ever comes")
        return cron

    def times_after(self, after: datetime) -> Iterator[datetime]:
        """The times it names strictly after ``after`` (timezone-aware), in UTC, in order."""
        start = after.astimezone(self.tz)
        try:
            for local in CronSim(self.expression, start):
                yield local.astimezone(UTC)
        except StopIteration:  # cronsim gives up after 50 years without a match
            return

    def next_after(self, after: datetime) -> datetime | None:
        """The first time strictly after ``after``, in UTC; None if none comes."""
        return next(self.times_after(after), None)

    def min_interval_s(self, after: datetime) -> float:
        """The shortest gap between two consecutive fires over the next eight days (at
        most 20,000 fires), in seconds: how often it fires at its most frequent. Eight days
        see the gaps across midnight and between weekdays; a 60 s gap, the least five
        fields can make, ends the search early."""
        end = after + _INTERVAL_SPAN
        shortest = float("inf")
        previous: datetime | None = None
        for at in itertools.islice(self.times_after(after), _INTERVAL_SAMPLE):
            if previous is not None:
                shortest = min(shortest, (at - previous).total_seconds())
                if shortest <= 60 or at >= end:
                    break
            previous = at
        return shortest


def _field_problem(parts: list[str], error: str, tz: ZoneInfo) -> str:
    """cronsim's ``Bad minute`` as which field, its value and what it takes."""
    for index, name in enumerate(FIELDS):
        if error != f"Bad {name}":
            continue
        if name == "day-of-month" and _valid([*parts[:3], "*", parts[4]], tz):
            return (
                f"the day-of-month field {parts[2]!r} names no day that the month field "
                f"{parts[3]!r} has"
            )
        return (
            f"the {name} field {parts[index]!r} is not valid: it takes {RANGES[index]}, *, "
            "a range a-b, a list a,b or a step */n"
        )
    return error


def _valid(parts: list[str], tz: ZoneInfo) -> bool:
    try:
        CronSim(" ".join(parts), datetime(2026, 1, 1, tzinfo=tz))
    except CronSimError:
        return False
    return True
