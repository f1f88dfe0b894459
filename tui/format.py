"""How values look on screen: statuses, types, levels, the progress line.

Sizes, durations, ages, counts and file names are core.display's (the same in every face),
re-exported here so the screens keep writing `fmt.size(...)`. What is the TUI's own: every
status is shown as a glyph *and* a word (readable without colour, e.g. over a 16-colour SSH
session), and the styles of the table, the detail view and the progress panel.
"""

from __future__ import annotations

import os

from rich.text import Text

from core import display
from core.display import (
    age,
    clean,
    duration,
    exact,
    home_short,
    listing,
    name,
    plural,
    rate,
    short_age,
    short_id,
    short_size,
    size,
    speed,
    utc,
)
from core.models import BackupStatus, BackupType, ProgressEvent

__all__ = [
    "LEVEL_STYLE",
    "STATUS_STYLE",
    "TYPE_STYLE",
    "age",
    "clean",
    "duration",
    "exact",
    "failure_text",
    "fraction",
    "home_short",
    "level_text",
    "listing",
    "name",
    "path",
    "plural",
    "progress_line",
    "rate",
    "short_age",
    "short_id",
    "short_location",
    "short_size",
    "size",
    "speed",
    "status_text",
    "tags_text",
    "type_text",
    "utc",
]

STATUS_STYLE: dict[BackupStatus, tuple[str, str]] = {
    BackupStatus.COMPLETED: ("✓", "green"),
    BackupStatus.FAILED: ("✗", "bold red"),
    BackupStatus.RUNNING: ("▶", "yellow"),
    BackupStatus.PENDING: ("…", "yellow"),
    BackupStatus.VALIDATING: ("?", "cyan"),
    BackupStatus.RESTORING: ("↺", "magenta"),
}

TYPE_STYLE: dict[BackupType, str] = {
    BackupType.FULL: "bold",
    BackupType.INCREMENTAL: "",
    BackupType.SNAPSHOT: "cyan",
    BackupType.CHECKPOINT: "magenta",
}

LEVEL_STYLE: dict[str, str] = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARNING": "yellow",
    "ERROR": "bold red",
}


def tags_text(tags: dict[str, str], limit: int = 60) -> str:
    """The tags in the TUI's columns: cut at 60 characters unless told otherwise."""
    return display.tags_text(tags, limit)


def status_text(status: BackupStatus | None, *, error: str | None = None) -> Text:
    if status is None:
        return Text("-", style="dim")
    glyph, style = STATUS_STYLE.get(status, ("·", ""))
    text = Text(f"{glyph} {status.value}", style=style)
    if error:
        text.append(f" ({error})", style="red")
    return text


def type_text(kind: BackupType) -> Text:
    return Text(kind.value, style=TYPE_STYLE.get(kind, ""))


def level_text(level: str) -> Text:
    return Text(f"{level:<7}", style=LEVEL_STYLE.get(level, ""))


def progress_line(event: ProgressEvent | None) -> str:
    """'12.0 MiB / 40.0 MiB · 120/300 files · 5.0 MiB/s · ETA 6 s · src/a.py'."""
    if event is None:
        return "starting…"
    parts = [event.phase]
    if event.bytes_total:
        parts.append(f"{size(event.bytes_done)} / {size(event.bytes_total)}")
    elif event.bytes_done:
        parts.append(size(event.bytes_done))
    if event.files_total is not None:
        parts.append(f"{event.files_done}/{event.files_total} files")
    elif event.files_done:
        parts.append(plural(event.files_done, "file"))
    if event.rate_bytes_per_second:
        parts.append(rate(event.rate_bytes_per_second))
    if event.eta_seconds is not None and event.phase != "done":
        parts.append(f"ETA {duration(event.eta_seconds)}")
    if event.current_path:
        parts.append(event.current_path)
    elif event.operation == "copy" and event.backup_id:
        parts.append(event.backup_id)  # a copy goes backup by backup
    return " · ".join(parts)


def path(value: str | os.PathLike[str]) -> str:
    """A path as a person reads it on screen (a data directory, a restore or copy target): `~`
    for the home directory, then `name`'s escapes (I14), so a newline or an escape in it never
    breaks the dialog's line or reaches the terminal. For showing only: what goes back into an
    Input (a default target) stays `home_short`, the path itself."""
    return name(home_short(value))


def short_location(url: str, width: int) -> str:
    """Where a repository lives, in `width` cells: `~` for the home directory; the scheme and
    bucket (when they leave room) and the end of the path kept, the middle left out
    ("s3://bucket/…/nexus")."""
    text = name(home_short(url))  # `path`, for a location
    if len(text) <= width:
        return text
    scheme, sep, rest = text.partition("://")
    head, body = (scheme + sep, rest) if sep else ("", text)
    bucket, slash, path = body.partition("/")
    if sep and slash and len(head) + len(bucket) + 2 + min(len(path), 8) <= width:
        head, body = head + bucket + "/", path
    room = max(1, width - len(head) - 1)
    tail = body[-room:]
    cut = tail.find("/")
    if 0 < cut <= len(tail) // 2:  # start at a component, when that keeps most of the room
        tail = tail[cut:]
    return head + "…" + tail


def fraction(event: ProgressEvent | None) -> tuple[float | None, float]:
    """(total, done) for a ProgressBar: bytes when known, else files, else indeterminate."""
    if event is None:
        return None, 0
    if event.phase == "done":
        return 1, 1
    if event.bytes_total:
        return float(event.bytes_total), float(min(event.bytes_done, event.bytes_total))
    if event.files_total:
        return float(event.files_total), float(min(event.files_done, event.files_total))
    return None, 0


def failure_text(state: str, error: str | None) -> str:
    """'cancelled', or 'failed: why': the state, and the error when it says more."""
    error = (error or "").strip()
    return state if not error or error == state else f"{state}: {error}"
