"""A one-line progress display for the terminal (the CLI's progress bar).

`ProgressBar` takes the core's :class:`~core.models.ProgressEvent` values (it is a progress
callback) and redraws a single line on a terminal stream (stderr by default):

    reading   [########------------]  41%  12.0 MiB/29.3 MiB  8/20 files  ETA 0:01  a/big.bin

The line always fits the terminal's width (``shutil.get_terminal_size``): the current path is
shortened from the left first, then the less important fields are dropped. It is cleared when
the operation ends (`close()`, or leaving the ``with`` block), so that the result printed
afterwards starts on a clean line. When the stream is not a terminal it writes nothing at all.
"""

from __future__ import annotations

import shutil
import sys
import unicodedata
from typing import TYPE_CHECKING, TextIO

from core.display import clean, size

if TYPE_CHECKING:  # only annotated: the table layout (`cells`) must not cost pydantic's import
    from core.models import ProgressEvent

BAR_WIDTH = 20
MIN_PATH_CELLS = 8
PATH_CELLS = 24  # the bar and the rate give way to keep this much of the path
ELLIPSIS = "…"

__all__ = ["ProgressBar", "format_eta", "render_line"]


def _char_cells(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cells(text: str) -> int:
    """How many terminal columns `text` takes (wide CJK characters take two)."""
    return sum(_char_cells(ch) for ch in text)


def truncate_left(text: str, width: int) -> str:
    """Keep the end of `text` (the file name) within `width` columns, marking the cut."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    kept: list[str] = []
    used = cells(ELLIPSIS)
    for ch in reversed(text):
        w = _char_cells(ch)
        if used + w > width:
            break
        kept.append(ch)
        used += w
    return ELLIPSIS + "".join(reversed(kept))


def truncate_right(text: str, width: int) -> str:
    if cells(text) <= width:
        return text
    out: list[str] = []
    used = 0
    for ch in text:
        w = _char_cells(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0 or seconds > 100 * 3600:
        return "--:--"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _fraction(event: ProgressEvent) -> float | None:
    if event.bytes_total:
        return min(1.0, max(0.0, event.bytes_done / event.bytes_total))
    if event.files_total:
        return min(1.0, max(0.0, event.files_done / event.files_total))
    if event.bytes_total == 0 and event.files_total == 0:
        return 1.0
    return None


def _eta(event: ProgressEvent) -> float | None:
    if event.eta_seconds is not None:
        return event.eta_seconds
    if event.bytes_total is not None and event.rate_bytes_per_second > 0:
        return max(0.0, event.bytes_total - event.bytes_done) / event.rate_bytes_per_second
    return None


def render_line(event: ProgressEvent, width: int) -> str:
    """The progress line for `event`, at most ``width - 1`` columns (so it never wraps)."""
    limit = max(10, width - 1)
    fraction = _fraction(event)
    # Fields in order of importance; the least important are dropped first when space is short.
    phase = f"{clean(event.phase):<9}"
    bar = ""
    percent = ""
    if fraction is not None:
        filled = round(fraction * BAR_WIDTH)
        bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"
        percent = f"{fraction * 100:3.0f}%"
    if event.bytes_total is not None:
        amount = f"{size(event.bytes_done)}/{size(event.bytes_total)}"
    else:
        amount = size(event.bytes_done)
    if event.files_total is not None:
        files = f"{event.files_done}/{event.files_total} files"
    else:
        files = f"{event.files_done} files"
    rate = f"{size(event.rate_bytes_per_second)}/s" if event.rate_bytes_per_second > 0 else ""
    eta = f"ETA {format_eta(_eta(event))}" if event.bytes_total or event.files_total else ""

    # (field, priority): when the line is too long, the highest numbers go first. The bar and
    # the rate give way to the current path; the rest only once the path could not be shown.
    fields: list[tuple[str, int]] = [
        (phase, 0),
        (bar, 6),
        (percent, 1),
        (amount, 2),
        (files, 3),
        (rate, 5),
        (eta, 4),
    ]
    fields = [f for f in fields if f[0]]
    path = clean(event.current_path or "")

    def join(items: list[tuple[str, int]]) -> str:
        return "  ".join(text for text, _ in items)

    def drop_worst() -> None:
        worst = max(range(len(fields)), key=lambda i: fields[i][1])
        del fields[worst]

    if path:
        want = min(cells(path), PATH_CELLS)
        while True:
            room = limit - cells(join(fields)) - 2
            if room >= want:
                return join(fields) + "  " + truncate_left(path, room)
            if not any(p >= 5 for _, p in fields):
                break
            drop_worst()
        if room >= MIN_PATH_CELLS:
            return join(fields) + "  " + truncate_left(path, room)
    while cells(join(fields)) > limit and len(fields) > 1:
        drop_worst()
    return truncate_right(join(fields), limit)


class ProgressBar:
    """A progress callback that redraws one line on a terminal; silent elsewhere.

    Use it as a context manager so the line is cleared however the operation ends.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = bool(self.stream.isatty())
            except (AttributeError, ValueError, OSError):
                enabled = False
        self.enabled = enabled
        self._drawn = False
        self._last = ""

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __call__(self, event: ProgressEvent) -> None:
        self.update(event)

    def _width(self) -> int:
        return shutil.get_terminal_size((80, 24)).columns

    def update(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        if event.phase == "done":
            self.clear()
            return
        line = render_line(event, self._width())
        if line == self._last and self._drawn:
            return
        self._write("\r" + line + "\x1b[K")
        self._drawn = True
        self._last = line

    def clear(self) -> None:
        if self.enabled and self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False
            self._last = ""

    def close(self) -> None:
        self.clear()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # A vanished terminal must never turn a working backup into an error.
            self.enabled = False
