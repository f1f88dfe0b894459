"""What the CLI prints: the lines on stdout, the one error line on stderr, the `--json` output,
and the layouts (tables, label blocks) of the human output. The values in them (sizes, ages,
durations, counts, tags) read as in every face: core.display's, re-exported here.

Every file name goes through `name` and every message through `clean` before it is printed,
so a newline or a byte that was not UTF-8 cannot break a line or the terminal, and no two
names read alike (core.display).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cli.progress_bar import cells
from core import display
from core.display import age, clean, duration, name, plural, size, speed, tags_text

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "PROG",
    "ago",
    "block",
    "clean",
    "duration",
    "emit",
    "emit_error",
    "error_line",
    "fmt_tags",
    "name",
    "out",
    "plural",
    "size",
    "speed",
    "stamp",
    "table",
]

PROG = "nexus-backup"


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def error_line(message: str, *, kind: str = "error") -> None:
    message = clean(" ".join(str(message).split())) or "unknown error"
    sys.stderr.write(f"{PROG}: {kind}: {message}\n")
    sys.stderr.flush()


def config_damage(problem: str) -> str:
    """What a listing says of a project whose config.json cannot be read: its backups still
    show (each metadata.json stands alone), yet none of them restores."""
    return (
        f"{problem}: no backup of it can be restored or made until its config.json is put "
        "back (from a copy of the repository: docs/design.md §1.1)"
    )


def emit(value: BaseModel | Sequence[BaseModel]) -> None:
    """--json output: the model(s), and nothing else, on stdout."""
    from pydantic import BaseModel  # only --json output needs it

    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    else:
        data = [item.model_dump(mode="json") for item in value]
    out(json.dumps(data, indent=2, ensure_ascii=False))


def emit_error(message: str, code: int, kind: str = "error") -> None:
    """--json output of a failure: ``{"error": {"message", "code", "kind"}}`` on stdout, the
    message cleaned as the stderr line is; `code` is the exit code."""
    text = clean(" ".join(str(message).split())) or "unknown error"
    out(json.dumps({"error": {"message": text, "code": code, "kind": kind}}, ensure_ascii=False))


def first_ids(ids: Sequence[str], count: int = 5) -> str:
    """The first `count` ids of a list a warning names, then " ..." when there are more."""
    return ", ".join(ids[:count]) + (" ..." if len(ids) > count else "")


def ago(dt: datetime | None) -> str:
    """'5 minutes ago', from now."""
    return age(dt, datetime.now(UTC))


def stamp(dt: datetime | None) -> str:
    """``2026-11-29 03:12:03 UTC (5 minutes ago)``."""
    return display.stamp(dt, datetime.now(UTC))


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
    return tags_text(tags) or "-"


def block(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """``Label       value`` lines; continuation lines of a value are indented under it."""
    width = max(len(label) for label, _ in pairs) + 2
    lines = []
    for label, value in pairs:
        first, *rest = str(value).split("\n") or [""]
        lines.append(f"{label:<{width}}{first}".rstrip())
        lines.extend(" " * width + line for line in rest)
    return lines
