"""The schedule's flags of `policy set` (issue 14): `--schedule`, `--schedule-delay`,
`--schedule-verify`, `--on-failure`, `--on-success`, `--webhook`; `off` clears one. And the
lines `policy show` adds: the schedule and its next five runs."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser imports this module for its flags: not pydantic's models,
    from core.retention import Policy  # nor the schedule's parser until a flag is given

OFF = "off"


def _schedule(text: str) -> str | None:
    from core import schedule as sched

    if text.strip().lower() == OFF:
        return None
    try:
        return sched.normalized(text)
    except sched.ScheduleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _delay(text: str) -> int:
    from core import schedule as sched

    if text.strip().lower() == OFF:
        return 0
    try:
        return sched.parse_delay(text)
    except sched.ScheduleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _optional(text: str) -> str | None:
    return None if text.strip().lower() == OFF else text


def add_policy_flags(p: argparse.ArgumentParser) -> None:
    """Every default is argparse.SUPPRESS: only what is given changes the policy."""
    no = argparse.SUPPRESS
    p.add_argument(
        "--schedule",
        metavar="WHEN",
        type=_schedule,
        default=no,
        help="when run-due backs the project up: a systemd calendar (daily 03:00, "
        "Mon..Fri 02:30, *:0/15) or a cron line (0 3 * * *), UTC unless a zone ends it; off",
    )
    p.add_argument(
        "--schedule-delay",
        metavar="DURATION",
        type=_delay,
        default=no,
        help="each scheduled run waits a random 0..DURATION (30m, 1h)",
    )
    p.add_argument(
        "--schedule-verify",
        choices=["off", "quick", "full"],
        default=no,
        help="verify each scheduled backup (quick: chunks present; full: every chunk read)",
    )
    for flag, text in (
        ("--on-failure", "a command run when a scheduled run fails"),
        ("--on-success", "a command run when a scheduled run succeeds"),
    ):
        p.add_argument(
            flag,
            metavar="CMD",
            type=_optional,
            default=no,
            help=f"{text} (sh -c; $NEXUS_PROJECT, $NEXUS_BACKUP_ID, $NEXUS_STATUS, "
            "$NEXUS_ERROR in its environment); off",
        )
    p.add_argument(
        "--webhook",
        metavar="URL",
        type=_optional,
        default=no,
        help="receives a JSON POST after every scheduled run; off",
    )


FIELDS = ("schedule", "schedule_delay", "schedule_verify", "on_failure", "on_success", "webhook")


def given(a: argparse.Namespace) -> dict:
    """The schedule flags given, as Policy fields."""
    return {name: getattr(a, name) for name in FIELDS if hasattr(a, name)}


def show_lines(policy: Policy, project_id: str, now: datetime | None = None) -> list[str]:
    """`policy show`'s schedule lines: the next five runs (their random delay included)."""
    from core import schedule as sched

    if policy.schedule is None:
        return []
    try:
        parsed = sched.parse(policy.schedule)
    except sched.ScheduleError:
        return []
    at = now or datetime.now(UTC)
    times = sched.next_due_times(parsed, project_id, at, policy.schedule_delay)
    return ["Next scheduled runs:"] + [f"  {t:%a %Y-%m-%d %H:%M:%S} UTC" for t in times]
