"""When a project's scheduled backup is due. Pure: no repository, no clock, no I/O.

A schedule is written as systemd's `OnCalendar=` (a practical subset) or as a 5-field cron
expression, because operators already know both:

- systemd: `minutely`, `hourly`, `daily`, `weekly`, `monthly`, `quarterly`, `semiannually`,
  `yearly`; `[WEEKDAYS] [YYYY-MM-DD] [HH:MM[:SS]]` where each part is `*`, a value, a range
  (`Mon..Fri`, `1..5`), a repetition (`0/15`, `*/15`) or a comma list of those; e.g.
  `*-*-* 03:00:00`, `Mon..Fri 02:30`, `*:0/15`, `Sat *-*-1..7 04:00`. Beyond systemd, a
  shorthand may be followed by a time: `daily 03:00` is `*-*-* 03:00:00`, `weekly 03:00`
  `Mon *-*-* 03:00:00`, `monthly 03:00` `*-*-01 03:00:00`.
- cron: `MIN HOUR DOM MON DOW` (`*`, `a-b`, `*/n`, `a-b/n`, lists, month and day names; DOW 0
  or 7 is Sunday; a restricted DOM and DOW match when either does, as in cron), or `@hourly`,
  `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`.

Every schedule is read in UTC unless it ends with a time zone: `UTC` or an IANA name
(`daily 03:00 Europe/Berlin`, as systemd accepts); the engine records every time in UTC
(docs/design.md §1), so "next run" is the same on every host sharing a repository whatever
their local zone. A wall-clock time a zone skips (a DST gap) never fires; one it repeats fires
once (the first).

Due: a project is due when a scheduled instant (plus its random delay) at or before now is
later than the start of its last run; after downtime it is due once, never once per missed
slot. The random delay of a slot is derived from the project and the slot (a hash), so every
`run-due` and every face agree on it without storing it.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: How far a search for the next or previous slot looks (covers Feb 29 and sparse years).
SEARCH_DAYS = 366 * 9
#: A slot not run this long after it came due is shown overdue (a timer runs `run-due`
#: every few minutes, so a due project waiting longer than this was missed).
OVERDUE_AFTER = timedelta(minutes=30)
#: The longest random delay (systemd allows more; a day keeps one run per daily slot).
MAX_DELAY_SECONDS = 24 * 3600
#: A last run started (or a backup made) more than this after now was stamped by a clock
#: that was ahead and has since been set back: it proves nothing about the slots before now.
AHEAD_TOLERANCE = timedelta(minutes=5)

_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_SHORTHANDS = {
    "minutely": "*-*-* *:*:00",
    "hourly": "*-*-* *:00:00",
    "daily": "*-*-* 00:00:00",
    "weekly": "Mon *-*-* 00:00:00",
    "monthly": "*-*-01 00:00:00",
    "quarterly": "*-01,04,07,10-01 00:00:00",
    "semiannually": "*-01,07-01 00:00:00",
    "yearly": "*-01-01 00:00:00",
    "annually": "*-01-01 00:00:00",
}
#: Shorthands a time may follow (`daily 03:00`): their date part.
_DATED = {"daily": "*-*-*", "weekly": "Mon *-*-*", "monthly": "*-*-01", "yearly": "*-01-01"}
_CRON_AT = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_DELAY_UNIT = r"(hours?|h|minutes?|min|m|seconds?|sec|s)"
_DELAY = re.compile(r"(\d+)\s*" + _DELAY_UNIT + r"\s*")


class ScheduleError(ValueError):
    """A schedule or delay that cannot be read; its text is the one line to show."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the values each field may take (None: any weekday / any year)."""

    text: str
    years: frozenset[int] | None
    months: tuple[int, ...]
    days: tuple[int, ...]
    weekdays: frozenset[int] | None  # 0 = Monday
    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]
    zone: tzinfo = UTC
    #: cron's rule: a restricted day of month and day of week match when either does.
    day_or_weekday: bool = False

    # --- matching ----------------------------------------------------------------------

    def _day_matches(self, d: date) -> bool:
        if self.years is not None and d.year not in self.years:
            return False
        if d.month not in self.months:
            return False
        day_ok = d.day in self.days
        week_ok = self.weekdays is None or d.weekday() in self.weekdays
        if self.day_or_weekday:
            return day_ok or week_ok
        return day_ok and week_ok

    @cached_property
    def _times(self) -> list[tuple[int, int, int]]:
        return [(h, m, s) for h in self.hours for m in self.minutes for s in self.seconds]

    def _instants(self, d: date) -> list[datetime]:
        """The day's slots in UTC, in order; a wall time the zone skips is left out."""
        out = []
        for h, m, s in self._times:
            wall = datetime(d.year, d.month, d.day, h, m, s, tzinfo=self.zone)
            utc = wall.astimezone(UTC)
            if utc.astimezone(self.zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
                continue  # a DST gap: this wall time does not exist
            out.append(utc)
        return sorted(set(out))

    def next_after(self, t: datetime) -> datetime | None:
        """The first slot strictly after `t` (UTC), or None within SEARCH_DAYS."""
        t = _utc(t)
        day = t.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                slots = self._instants(day)
                i = bisect_right(slots, t)
                if i < len(slots):
                    return slots[i]
            day += timedelta(days=1)
        return None

    def last_at_or_before(self, t: datetime) -> datetime | None:
        """The latest slot at or before `t` (UTC), or None within SEARCH_DAYS."""
        t = _utc(t)
        day = t.astimezone(self.zone).date() + timedelta(days=1)
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                slots = self._instants(day)
                i = bisect_right(slots, t)
                if i > 0:
                    return slots[i - 1]
            day -= timedelta(days=1)
        return None

    def calendar(self) -> str | None:
        """The same schedule as a systemd `OnCalendar=` expression, with its zone (None for a
        cron line whose day of month and day of week are both restricted: systemd has no
        "either"). Used to cross-check the next runs against `systemd-analyze calendar`."""
        if self.day_or_weekday:
            return None

        def field(values: tuple[int, ...] | frozenset[int], lo: int, hi: int, width: int) -> str:
            if set(values) == set(range(lo, hi + 1)):
                return "*"
            return ",".join(f"{v:0{width}d}" for v in sorted(values))

        names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        week = "" if self.weekdays is None else ",".join(names[d] for d in sorted(self.weekdays))
        years = "*" if self.years is None else ",".join(str(y) for y in sorted(self.years))
        day = f"{years}-{field(self.months, 1, 12, 2)}-{field(self.days, 1, 31, 2)}"
        clock = ":".join(
            field(v, 0, hi, 2)
            for v, hi in ((self.hours, 23), (self.minutes, 59), (self.seconds, 59))
        )
        zone = "UTC" if self.zone is UTC else str(self.zone)
        return " ".join(p for p in (week, day, clock, zone) if p)

    def next_runs(self, after: datetime, count: int = 5) -> list[datetime]:
        """The next `count` slots after `after` (what the policy screen shows)."""
        out: list[datetime] = []
        t = after
        while len(out) < count:
            nxt = self.next_after(t)
            if nxt is None:
                break
            out.append(nxt)
            t = nxt
        return out


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --- parsing ---------------------------------------------------------------------------


def _value(text: str, names: dict[str, int] | None, lo: int, hi: int, what: str) -> int:
    key = text.lower()
    if names is not None and key[:3] in names and key.isalpha():
        return names[key[:3]]
    if not text.isdigit():
        raise ScheduleError(f"invalid {what} {text!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ScheduleError(f"{what} {value} is out of range {lo}-{hi}")
    return value


def _field(
    text: str,
    lo: int,
    hi: int,
    what: str,
    *,
    range_sep: str,
    names: dict[str, int] | None = None,
) -> tuple[int, ...]:
    """One field: `*`, `a`, `a<sep>b`, `a/n`, `*/n`, `a<sep>b/n`, comma lists of those."""
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"empty item in {what} {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            step = _value(step_text, None, 1, hi - lo + 1 if hi > lo else 1, f"{what} step")
        if base == "*":
            start, end = lo, hi
        elif range_sep in base:
            a, _, b = base.partition(range_sep)
            start, end = _value(a, names, lo, hi, what), _value(b, names, lo, hi, what)
            if end < start:
                raise ScheduleError(f"{what} range {base!r} runs backwards")
        else:
            start = _value(base, names, lo, hi, what)
            end = hi if slash else start
        values.update(range(start, end + 1, step))
    return tuple(sorted(values))


def _zone(name: str) -> tzinfo | None:
    if name.upper() in ("UTC", "GMT", "Z"):
        return UTC
    if "/" not in name or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _systemd(text: str, words: list[str], zone: tzinfo) -> Schedule:
    if len(words) == 1 and words[0].lower() in _SHORTHANDS:
        words = _SHORTHANDS[words[0].lower()].split()
    elif len(words) == 2 and words[0].lower() in _DATED and ":" in words[1]:
        words = [*_DATED[words[0].lower()].split(), words[1]]
    weekdays: frozenset[int] | None = None
    date_part, time_part = "*-*-*", "00:00:00"
    rest = list(words)
    if len(rest) == 1 and re.fullmatch(r"[A-Za-z]+", rest[0]):
        known = ", ".join(_SHORTHANDS)
        raise ScheduleError(f"unknown word (known: {known}; or e.g. daily 03:00, 0 3 * * *)")
    if rest and not re.match(r"^[\d*]", rest[0]):
        weekdays = frozenset(_field(rest.pop(0), 0, 6, "weekday", range_sep="..", names=_WEEKDAYS))
    for word in rest:
        if ":" in word and time_part == "00:00:00" and word is rest[-1]:
            time_part = word
        elif "-" in word and date_part == "*-*-*":
            date_part = word
        else:
            raise ScheduleError(f"cannot read {word!r} in schedule {text!r}")
    parts = date_part.split("-")
    if len(parts) != 3:
        raise ScheduleError(f"date {date_part!r}: use YEAR-MONTH-DAY, e.g. *-*-01")
    years = (
        None if parts[0] == "*" else frozenset(_field(parts[0], 1970, 2199, "year", range_sep=".."))
    )
    months = _field(parts[1], 1, 12, "month", range_sep="..")
    days = _field(parts[2], 1, 31, "day", range_sep="..")
    clock = time_part.split(":")
    if len(clock) == 2:
        clock.append("00")
    if len(clock) != 3:
        raise ScheduleError(f"time {time_part!r}: use HH:MM or HH:MM:SS")
    hours = _field(clock[0], 0, 23, "hour", range_sep="..")
    minutes = _field(clock[1], 0, 59, "minute", range_sep="..")
    seconds = _field(clock[2], 0, 59, "second", range_sep="..")
    return Schedule(text, years, months, days, weekdays, hours, minutes, seconds, zone)


def _cron(text: str, words: list[str], zone: tzinfo) -> Schedule:
    minute, hour, dom, month, dow = words
    weekdays = {d % 7 for d in _field(dow, 0, 7, "day of week", range_sep="-", names=_CRON_DOW)}
    restricted = dom != "*" and dow != "*"
    return Schedule(
        text,
        None,
        _field(month, 1, 12, "month", range_sep="-", names=_MONTHS),
        _field(dom, 1, 31, "day of month", range_sep="-"),
        # cron counts Sunday 0; datetime counts Monday 0
        None if dow == "*" else frozenset((d - 1) % 7 for d in weekdays),
        _field(hour, 0, 23, "hour", range_sep="-"),
        _field(minute, 0, 59, "minute", range_sep="-"),
        (0,),
        zone,
        day_or_weekday=restricted,
    )


_CRON_DOW = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


@lru_cache(maxsize=512)
def parse(text: str) -> Schedule:
    """Read a schedule (systemd calendar or cron); ScheduleError says what is wrong. Cached:
    every project listing reads each project's schedule (a Schedule is immutable)."""
    cleaned = " ".join(text.split())
    if not cleaned or len(cleaned) > 200 or not cleaned.isprintable():
        raise ScheduleError("a schedule is a systemd calendar (daily 03:00) or a cron line")
    words = cleaned.split(" ")
    zone: tzinfo = UTC
    if len(words) > 1 and (found := _zone(words[-1])) is not None:
        zone, words = found, words[:-1]
    if words[0].startswith("@"):
        if len(words) != 1 or words[0].lower() not in _CRON_AT:
            raise ScheduleError(f"unknown cron shorthand {words[0]!r}")
        words = _CRON_AT[words[0].lower()].split()
    try:
        if len(words) == 5 and not any(":" in w or ".." in w for w in words):
            schedule = _cron(cleaned, words, zone)
        else:
            schedule = _systemd(cleaned, words, zone)
    except ScheduleError as exc:
        raise ScheduleError(f"schedule {cleaned!r}: {exc}") from None
    if schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None and not schedule.years:
        raise ScheduleError(f"schedule {cleaned!r} never fires (no such day)")
    return schedule


def normalized(text: str) -> str:
    """The schedule as given, whitespace collapsed (what the policy stores)."""
    parse(text)
    return " ".join(text.split())


def parse_delay(text: str) -> int:
    """A random delay in seconds: `30m`, `1h`, `90s`, `1h30m`, `45min`; `0` is none."""
    cleaned = text.strip().lower()
    if cleaned == "0":
        return 0
    parts = _DELAY.findall(cleaned)
    if not re.fullmatch(r"(?:\d+\s*" + _DELAY_UNIT + r"\s*)+", cleaned):
        raise ScheduleError(f"invalid delay {text!r}: use e.g. 30m, 1h, 90s")
    seconds = 0
    for number, unit in parts:
        seconds += int(number) * {"h": 3600, "m": 60, "s": 1}[unit[0]]
    if seconds > MAX_DELAY_SECONDS:
        raise ScheduleError(f"delay {text!r} is longer than a day")
    return seconds


def format_delay(seconds: int) -> str:
    """`1h30m`, `45m`, `90s`-style text of a delay (what `policy show` prints)."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return text or "0"


# --- due --------------------------------------------------------------------------------


def delay_of(project_id: str, slot: datetime, delay_seconds: int) -> timedelta:
    """The random delay of one slot of one project: the same in every process (a hash of
    both), so that a project does not become due at a different minute in each caller."""
    if delay_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{project_id}\0{_utc(slot).isoformat()}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % delay_seconds)


@dataclass(frozen=True)
class DueState:
    """Where a project stands against its schedule at `now`.

    `due_slot`: the slot a run is owed for (None: nothing owed); `due_at`: when it became
    due (slot plus delay); `next_run`: when the next run is expected (the owed one's due
    time if one is owed, else the next slot's); `overdue`: a run owed for longer than
    OVERDUE_AFTER (counted from the first slot missed)."""

    due_slot: datetime | None
    due_at: datetime | None
    next_run: datetime | None
    overdue: bool

    @property
    def due(self) -> bool:
        return self.due_slot is not None


def due_state(
    schedule: Schedule,
    project_id: str,
    last_start: datetime | None,
    now: datetime,
    delay_seconds: int = 0,
) -> DueState:
    """Whether a run is owed: a slot `s` with `last_start < s` whose due time (s plus its
    delay) is at or before `now`. Only the latest such slot counts, so a machine that was off
    for a week runs once. `last_start` None (never run): the latest slot before now is owed.
    A `last_start` ahead of now by more than AHEAD_TOLERANCE (a clock set back: an RTC put
    right by NTP, a VM restored) counts as never run: the latest slot runs once and the
    schedule goes on from there, rather than nothing running until the clock catches the
    stamp up (systemd resets a persistent timer's stamp from the future alike)."""
    now = _utc(now)
    if last_start is not None and _utc(last_start) > now + AHEAD_TOLERANCE:
        last_start = None
    owed: tuple[datetime, datetime] | None = None
    t = now
    # the latest slot whose due time has passed: with a delay the newest slot may not be due
    # yet while the one before still is (at most a day of delay: a few slots back at most)
    for _ in range(64):
        slot = schedule.last_at_or_before(t)
        if slot is None or (last_start is not None and slot <= _utc(last_start)):
            break
        at = slot + delay_of(project_id, slot, delay_seconds)
        if at <= now:
            owed = (slot, at)
            break
        if now - slot > timedelta(seconds=delay_seconds):
            break
        t = slot - timedelta(microseconds=1)
    if owed is not None:
        # overdue since the first slot owed (a run missed for hours is overdue even when the
        # latest slot came a minute ago); never run: since the latest slot
        first = owed[0]
        if last_start is not None:
            first = schedule.next_after(_utc(last_start)) or owed[0]
        first_at = first + delay_of(project_id, first, delay_seconds)
        return DueState(owed[0], owed[1], owed[1], now - min(first_at, owed[1]) > OVERDUE_AFTER)
    nxt = _next_due(schedule, project_id, now, delay_seconds, last_start)
    return DueState(None, None, nxt, False)


def _next_due(
    schedule: Schedule, project_id: str, now: datetime, delay: int, last_start: datetime | None
) -> datetime | None:
    """The earliest due time after `now` of a slot not yet run (a slot's delay may put a
    later slot's first)."""
    best: datetime | None = None
    t = now - timedelta(seconds=delay)
    if last_start is not None:
        t = max(t, _utc(last_start))
    for _ in range(64):
        slot = schedule.next_after(t)
        if slot is None or (best is not None and slot > best):
            break
        at = slot + delay_of(project_id, slot, delay)
        if at > now and (best is None or at < best):
            best = at
        t = slot
    return best


def next_due_times(
    schedule: Schedule, project_id: str, after: datetime, delay_seconds: int = 0, count: int = 5
) -> list[datetime]:
    """The next `count` due times (each slot plus its delay), for the policy screen."""
    slots = schedule.next_runs(after, count)
    return sorted(s + delay_of(project_id, s, delay_seconds) for s in slots)


__all__ = [
    "AHEAD_TOLERANCE",
    "OVERDUE_AFTER",
    "DueState",
    "Schedule",
    "ScheduleError",
    "delay_of",
    "due_state",
    "format_delay",
    "next_due_times",
    "normalized",
    "parse",
    "parse_delay",
]
