"""core/schedule.py: schedules read as systemd and cron read them, next runs cross-checked
against `systemd-analyze calendar` itself, and the due rule (once per owed slot, catch-up
once after downtime, the random delay the same in every caller)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from core.schedule import (
    OVERDUE_AFTER,
    ScheduleError,
    delay_of,
    due_state,
    format_delay,
    parse,
    parse_delay,
)

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
HAVE_SYSTEMD = os.access(SYSTEMD_ANALYZE, os.X_OK)

#: Expressions systemd reads itself (given as typed) and those only nexus reads (our
#: shorthand-with-a-time and cron lines), checked through their calendar() form.
SYSTEMD_SYNTAX = [
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "*-*-* 03:00:00",
    "Mon..Fri 02:30",
    "*:0/15",
    "Sat *-*-1..7 04:00",
    "*-*-* 03:00:00 Europe/Berlin",
    "Mon,Wed *-*-* 22:15:30",
    "*-02-29 12:00",
]
NEXUS_ONLY = [
    "daily 03:00",
    "weekly 04:30",
    "monthly 01:00",
    "0 3 * * *",
    "*/20 9-17 * * 1-5",
    "30 2 1,15 * *",
    "@hourly",
    "0 0 * * 0",
    "15 1 * jan,jul sun",
]
BASES = [datetime(2026, 12, 1, 16, 59, 13, tzinfo=UTC), datetime(2027, 3, 27, 23, 30, tzinfo=UTC)]


def _systemd_next(expression: str, base: datetime, n: int = 5) -> list[datetime]:
    proc = subprocess.run(
        [
            SYSTEMD_ANALYZE,
            "calendar",
            f"--iterations={n}",
            f"--base-time={base:%Y-%m-%d %H:%M:%S} UTC",
            expression,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
        timeout=10,
    )
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r"\(in UTC\): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", proc.stdout)
    if not found:  # TZ=UTC: systemd prints no "(in UTC)" line, the elapse is UTC already
        found = re.findall(
            r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", proc.stdout
        )
    return [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in found]


@pytest.mark.skipif(not HAVE_SYSTEMD, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("base", BASES, ids=["dec", "dst"])
@pytest.mark.parametrize("expression", SYSTEMD_SYNTAX + NEXUS_ONLY)
def test_next_runs_match_systemd_analyze(expression: str, base: datetime) -> None:
    schedule = parse(expression)
    calendar = schedule.calendar()
    assert calendar is not None
    ours = schedule.next_runs(base, 5)
    assert len(ours) == 5
    assert ours == _systemd_next(calendar, base)
    if expression in SYSTEMD_SYNTAX:  # as typed, in UTC (our default zone)
        typed = expression if " Europe/" in expression else expression + " UTC"
        if expression in ("hourly", "daily", "weekly", "monthly", "quarterly"):
            typed = expression  # a shorthand takes no zone: systemd reads it in TZ=UTC
        assert ours == _systemd_next(typed, base)


def test_cron_day_of_month_or_weekday() -> None:
    """cron: a restricted day of month and day of week match when either does."""
    s = parse("0 0 13 * 5")
    runs = s.next_runs(datetime(2026, 11, 30, tzinfo=UTC), 4)
    assert [r.date().isoformat() for r in runs] == [
        "2026-12-04",
        "2026-12-11",
        "2026-12-13",
        "2026-12-18",
    ]
    assert s.calendar() is None


def test_zone_gap_never_fires_and_repeat_fires_once() -> None:
    """Europe/Berlin skips 02:30 on 2027-03-28 and repeats 02:30 on 2027-10-31."""
    s = parse("*-*-* 02:30 Europe/Berlin")
    spring = s.next_runs(datetime(2027, 3, 27, 12, tzinfo=UTC), 2)
    assert [r.date().isoformat() for r in spring] == ["2027-03-29", "2027-03-30"]
    autumn = s.next_runs(datetime(2027, 10, 30, 12, tzinfo=UTC), 2)
    assert autumn[0] == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # the first (CEST) 02:30
    assert autumn[1].date().isoformat() == "2027-11-01"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sometimes",
        "daily 25:00",
        "Mon..Fry 02:00",
        "*-13-* 00:00",
        "61 * * * *",
        "* * * *",
        "@often",
        "*-02-30 00:00",
        "hourly 03:00",
        "0 3 * * * extra",
        "\x1b[2J",
    ],
)
def test_bad_schedules_are_one_clear_error(bad: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse(bad)
    assert "\n" not in str(info.value) and str(info.value)


def test_delay_parsing() -> None:
    assert parse_delay("30m") == 1800
    assert parse_delay("1h30m") == 5400
    assert parse_delay("45 min") == 2700
    assert parse_delay("90s") == 90
    assert parse_delay("0") == 0
    assert format_delay(5400) == "1h30m"
    for bad in ("30", "ten minutes", "2d", "25h", "-5m"):
        with pytest.raises(ScheduleError):
            parse_delay(bad)


T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_hourly_due_once_per_slot_and_catch_up_once() -> None:
    s = parse("hourly")
    started = T0 + timedelta(minutes=1)  # the 10:00 run
    # not due again before 11:00
    for minute in (2, 30, 59):
        assert not due_state(s, "web", started, T0 + timedelta(minutes=minute)).due
    st = due_state(s, "web", started, T0 + timedelta(minutes=30))
    assert st.next_run == T0 + timedelta(hours=1) and not st.overdue
    at_11 = due_state(s, "web", started, T0 + timedelta(hours=1))
    assert at_11.due and at_11.due_slot == T0 + timedelta(hours=1)
    # the machine was off from 10:01 to 15:20: one run owed, for the latest slot (15:00)
    back = due_state(s, "web", started, T0 + timedelta(hours=5, minutes=20))
    assert back.due_slot == T0 + timedelta(hours=5)
    assert back.overdue  # owed since 11:00, not since 15:00
    # a slot owed for less than OVERDUE_AFTER is due, not overdue
    soon = due_state(s, "web", started, T0 + timedelta(hours=1, minutes=10))
    assert soon.due and not soon.overdue
    assert timedelta(minutes=10) < OVERDUE_AFTER
    late = due_state(s, "web", started, T0 + timedelta(hours=1, minutes=45))
    assert late.overdue and late.due_slot == T0 + timedelta(hours=1)
    # once that run started (15:45), nothing more is owed until 16:00
    restarted = T0 + timedelta(hours=5, minutes=45)
    assert not due_state(s, "web", restarted, restarted + timedelta(minutes=10)).due


def test_never_run_is_due_at_once() -> None:
    assert due_state(parse("daily"), "web", None, T0).due


def test_random_delay_is_stable_and_bounded() -> None:
    s = parse("hourly")
    slot = T0 + timedelta(hours=1)
    d = delay_of("web", slot, 1800)
    assert d == delay_of("web", slot, 1800)  # every caller agrees
    assert timedelta(0) <= d < timedelta(minutes=30)
    delays = {delay_of(p, slot, 1800) for p in ("a", "b", "c", "d", "e")}
    assert len(delays) > 1  # projects are spread
    started = T0 + timedelta(minutes=40)
    assert not due_state(s, "web", started, slot + d - timedelta(seconds=1), 1800).due
    st = due_state(s, "web", started, slot + d, 1800)
    assert st.due and st.due_at == slot + d
    before = due_state(s, "web", started, slot - timedelta(minutes=1), 1800)
    assert before.next_run == slot + d
