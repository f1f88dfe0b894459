"""How values look on screen: sizes, ages, statuses, levels.

One module so the table, the detail view and the progress panel agree, and so every status is
shown as a glyph *and* a word (readable without colour, e.g. over a 16-colour SSH session).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import humanize
from rich.text import Text

from core.models import BackupStatus, BackupType, ProgressEvent

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


def utc(value: datetime) -> datetime:
    """Naive datetimes from old metadata are taken as UTC, so comparisons never raise."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def home_short(path: str | os.PathLike[str]) -> str:
    """`/home/me/x` -> `~/x`: shorter, and the same on every machine (screenshots)."""
    text = str(path)
    home = os.path.expanduser("~")
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home) :]
    return text


def size(n: int | float | None) -> str:
    if n is None:
        return "?"
    return humanize.naturalsize(n, binary=True, format="%.1f")


def age(when: datetime | None, now: datetime) -> str:
    """'3 hours ago'; a time in the future (clock skew) reads 'just now' rather than odd text."""
    if when is None:
        return "never"
    delta = utc(now) - utc(when)
    if delta < timedelta(seconds=5):
        return "just now"
    return f"{humanize.naturaldelta(delta)} ago"


def short_age(when: datetime | None, now: datetime) -> str:
    """'3h ago', for the narrow project list."""
    if when is None:
        return "never"
    seconds = (utc(now) - utc(when)).total_seconds()
    for unit, span in (("y", 31536000), ("mo", 2592000), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{int(seconds // span)}{unit} ago"
    return "just now"


def short_size(n: int | None) -> str:
    """'11.8M': sizes in a narrow column."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}P"


def exact(when: datetime | None) -> str:
    if when is None:
        return "-"
    return utc(when).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return humanize.precisedelta(timedelta(seconds=round(seconds)), format="%0.0f")


def rate(bps: float | None) -> str:
    if not bps:
        return "-"
    return f"{size(bps)}/s"


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


def tags_text(tags: dict[str, str], limit: int = 60) -> str:
    out = ", ".join(f"{k}={v}" if v else k for k, v in sorted(tags.items()))
    return out if len(out) <= limit else out[: limit - 1] + "…"


def short_id(backup_id: str, width: int = 20) -> str:
    return backup_id if len(backup_id) <= width else backup_id[: width - 1] + "…"


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
        parts.append(f"{event.files_done} files")
    if event.rate_bytes_per_second:
        parts.append(rate(event.rate_bytes_per_second))
    if event.eta_seconds is not None and event.phase != "done":
        parts.append(f"ETA {duration(event.eta_seconds)}")
    if event.current_path:
        parts.append(event.current_path)
    return " · ".join(parts)


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


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 file', '3 files', '2 directories' (with `many` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def listing(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
