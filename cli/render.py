"""What the CLI prints: the lines on stdout, the one error line on stderr, the `--json` output,
and the humanized values (sizes, ages, durations) and layouts (tables, label blocks) of the
human output.

Every value that comes from a file name or a message goes through `clean` before it is
printed, so a newline or a byte that was not UTF-8 cannot break a line or the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import humanize
from pydantic import BaseModel

from cli.progress_bar import cells

PROG = "nexus-backup"


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def error_line(message: str, *, kind: str = "error") -> None:
    message = clean(" ".join(str(message).split())) or "unknown error"
    sys.stderr.write(f"{PROG}: {kind}: {message}\n")
    sys.stderr.flush()


def emit(value: BaseModel | Sequence[BaseModel]) -> None:
    """--json output: the model(s), and nothing else, on stdout."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    else:
        data = [item.model_dump(mode="json") for item in value]
    out(json.dumps(data, indent=2, ensure_ascii=False))


def size(n: float | None) -> str:
    return "-" if n is None else humanize.naturalsize(n, binary=True)


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def ago(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    return humanize.naturaltime(_aware(dt), when=datetime.now(UTC))


def stamp(dt: datetime | None) -> str:
    """``2026-11-29 03:12:03 UTC (5 minutes ago)``."""
    if dt is None:
        return "-"
    utc = _aware(dt).astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S} UTC ({ago(dt)})"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return humanize.precisedelta(timedelta(seconds=seconds), minimum_unit="seconds", format="%d")


def clean(text: object) -> str:
    """A value safe to print on one line: control characters (a newline in a file name) and
    bytes that were not UTF-8 (surrogate escapes) are shown escaped."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Aligned columns, two spaces apart; columns in `right` are right-aligned."""
    cols = len(headers)
    grid = [list(headers)] + [[clean(c) for c in row] for row in rows]
    widths = [max(cells(r[i]) for r in grid) for i in range(cols)]
    lines = []
    for row in grid:
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - cells(cell))
            parts.append(pad + cell if i in right else cell + pad)
        lines.append("  ".join(parts).rstrip())
    return lines


def fmt_tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"


def block(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """``Label       value`` lines; continuation lines of a value are indented under it."""
    width = max(len(label) for label, _ in pairs) + 2
    lines = []
    for label, value in pairs:
        first, *rest = str(value).split("\n") or [""]
        lines.append(f"{label:<{width}}{first}".rstrip())
        lines.extend(" " * width + line for line in rest)
    return lines
