"""`run-due [PROJECT...]`: back up every project whose scheduled run is owed (its policy's
`--schedule`), apply its retention, copy it to its `copy-to`, verify it when the policy asks,
and notify. Safe to call every minute: a project not due costs two small reads and prints
nothing (`--verbose` says so). Exit 0 unless a run failed (1)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cli.context import EXIT_ERROR, EXIT_OK, Context, run
from cli.render import clean, error_line, out

if TYPE_CHECKING:  # the parser imports this module for `add_arguments`: not the engine
    from core.scheduler import RunOutcome


def now_arg(text: str) -> datetime:
    """An ISO 8601 instant (`2026-12-01T03:00:00Z`); naive means UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def add_arguments(p: argparse.ArgumentParser, project_type: Callable[[str], str]) -> None:
    p.add_argument(
        "projects",
        metavar="PROJECT",
        nargs="*",
        type=project_type,
        help="only these (default: every project)",
    )
    # hidden: the time schedules are judged at (and the backups recorded as made), for tests
    # and rehearsals; no environment variable, so that none set by accident moves the clock
    p.add_argument("--now", type=now_arg, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also say which projects are not due"
    )


def _stamp(t: datetime | None) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M} UTC"


def describe(o: RunOutcome) -> str:
    """One line per project."""
    name = clean(o.project_id)
    if o.status == "not-due":
        return f"{name}: not due (next run {_stamp(o.next_run)})"
    if o.status in ("not-scheduled", "busy"):
        return f"{name}: {o.message}"
    if o.status == "failed":
        return f"{name}: scheduled run failed: {clean(o.error or o.message)}"
    steps = "; ".join(f"{s.name}: {clean(s.detail)}" for s in o.steps)
    return f"{name}: scheduled run for {_stamp(o.scheduled_for)} succeeded: {steps}"


def cmd_run_due(ctx: Context) -> int:
    from core.scheduler import payload, run_due

    a = ctx.args
    outcomes = run(run_due(ctx.manager, a.projects or None, now=a.now))
    code = EXIT_OK if all(o.ok for o in outcomes) else EXIT_ERROR
    if ctx.json:
        out(json.dumps([{**payload(o), "message": o.message} for o in outcomes], indent=2))
        return code
    for o in outcomes:
        if o.status == "failed":
            error_line(describe(o))
        elif o.ran or o.status == "busy" or a.verbose:
            out(describe(o))
        for problem in o.notify_errors:
            error_line(f"{clean(o.project_id)}: {clean(problem)}", kind="warning")
    return code
