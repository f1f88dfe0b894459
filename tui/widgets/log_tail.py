"""Live tail of the selected project's daily log, whoever writes it (this app, a cron job).

A timer polls the file from a thread worker through the engine's follower (core.logger's
LogTail: one fstat when nothing changed; rotation by day, truncation and replacement handled
there, as for every other reader); new lines
arrive as one message and are appended in one batch. It is a `Log`, which keeps plain
strings and styles only the lines on screen (through a highlighter), so a log growing by
thousands of lines a second costs little. Memory is bounded twice: the widget keeps
`MAX_LINES`, and the records kept for re-filtering by level are a deque of the same length.
"""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import ClassVar

from rich.highlighter import Highlighter
from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widgets import Log

from core.logger import LEVELS, LogRecord
from core.logger import LogTail as LogFollower
from tui import format as fmt
from tui.messages import LogRecordsRead

MAX_LINES = 2000
#: A project's log is shown from the lines in its last BACKLOG_BYTES (a large file is never
#: read whole), and a burst of more than MAX_BEHIND_BYTES between two polls skips ahead: the
#: view only ever shows its last MAX_LINES anyway.
BACKLOG_BYTES = 256 * 1024
MAX_BEHIND_BYTES = 1024 * 1024
POLL_SECONDS = 0.25
#: Lines of the day before shown above today's (a project last backed up yesterday evening
#: still shows how that went this morning).
EARLIER_LINES = 200
# columns of a formatted line: "HH:MM:SS LEVEL__ OPERATION message"
_LEVEL_AT, _OP_AT, _MSG_AT = 9, 17, 26


def record_line(record: LogRecord) -> str:
    """One line per record: a message's newlines are shown, not obeyed, and any other control
    character escaped (`fmt.clean`, I14: a raw escape would reach the terminal)."""
    message = fmt.clean(record.message.replace("\r", "").replace("\n", " ⏎ "))
    backup = f"{record.backup_id} " if record.backup_id else ""
    return f"{record.time:%H:%M:%S} {record.level:<7} {record.operation:<8} {backup}{message}"


def wrapped(line: str, width: int) -> list[str]:
    """A line wrapped at spaces to `width` columns, continued under the message column (a
    long error is read whole, never cut at the pane's edge)."""
    if width <= _MSG_AT + 8 or len(line) <= width:
        return [line]
    return textwrap.wrap(
        line, width, subsequent_indent=" " * _MSG_AT, drop_whitespace=True, break_on_hyphens=False
    ) or [line]


def day_line(day: date) -> str:
    return f"── {day:%a %Y-%m-%d} ──"


def follower(path_for: Callable[[], Path | None], project_id: str | None) -> LogFollower | None:
    """The engine's follower of a project's log (none without a project), set up for a view
    that shows the last lines."""
    if not project_id:
        return None
    return LogFollower(
        path_for, project_id=project_id, backlog=BACKLOG_BYTES, max_behind=MAX_BEHIND_BYTES
    )


class LevelHighlighter(Highlighter):
    """Colours a formatted line by its fixed columns: time, level, operation."""

    def highlight(self, text: Text) -> None:
        plain = text.plain
        text.stylize("dim", 0, 8)
        level = plain[_LEVEL_AT:_OP_AT].strip()
        style = fmt.LEVEL_STYLE.get(level)
        if style:
            text.stylize(style, _LEVEL_AT, _LEVEL_AT + len(level))
        text.stylize("cyan", _OP_AT, _MSG_AT - 1)
        if level == "ERROR":
            text.stylize("red", _MSG_AT, len(plain))


class LogTail(Log):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("L", "cycle_level", "Log level", id="log.level", tooltip="Filter log by level"),
    ]

    def __init__(
        self,
        path_for: Callable[[str], Path | None],
        earlier: Callable[[str], list[LogRecord]] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(max_lines=MAX_LINES, highlight=True, auto_scroll=True, **kwargs)
        self.highlighter = LevelHighlighter()
        self._path_for = path_for
        #: The day before's last records of a project (read once per project followed).
        self._earlier = earlier
        self._backfilled: LogFollower | None = None
        self._last_day: date | None = None
        self._width = 0
        self._follower: LogFollower | None = None
        self._records: deque[LogRecord] = deque(maxlen=MAX_LINES)
        self.min_level = 0
        self.border_title = "Log"

    def on_mount(self) -> None:
        self.set_interval(POLL_SECONDS, self._poll, name="log-poll")
        self._update_subtitle()

    def follow(self, project_id: str | None) -> None:
        """Switch to another project's log (or none): drop what is shown, read its tail."""
        if self._follower is not None and self._follower.project_id == project_id:
            return
        self._follower = follower(lambda: self._path_for(project_id), project_id)
        self._records.clear()
        self.clear()
        self.border_title = f"Log · {project_id}" if project_id else "Log"
        self._poll()

    @property
    def project_id(self) -> str | None:
        return self._follower.project_id if self._follower else None

    def _poll(self) -> None:
        if self._follower is None:
            return
        if any(w.is_running for w in self.workers if w.group == "log-poll"):
            return  # the previous read is still going: never pile up
        self._read(self._follower)

    def poll_now(self) -> None:
        """Read at once (after this app did something), rather than at the next tick."""
        self._poll()

    @work(thread=True, group="log-poll", exit_on_error=False, description="reading the log")
    def _read(self, follower: LogFollower) -> None:
        earlier: list[LogRecord] = []
        if self._backfilled is not follower and follower.project_id:
            self._backfilled = follower
            if self._earlier is not None:
                earlier = self._earlier(follower.project_id)
        records, reset = follower.read()
        if earlier:
            self.post_message(LogRecordsRead(str(follower.path), earlier + records, True))
        elif records or reset:
            self.post_message(LogRecordsRead(str(follower.path), records, reset))

    def on_log_records_read(self, message: LogRecordsRead) -> None:
        message.stop()
        if self._follower is None or str(self._follower.path) != message.path:
            return
        if message.reset:
            self._records.clear()
            self.clear()
            self._last_day = None
        self._records.extend(message.records)
        self._write(message.records)
        self._update_subtitle()

    def _write(self, records: list[LogRecord]) -> None:
        floor = self.min_level
        shown = [r for r in records if LEVELS.index(r.level) >= floor][-MAX_LINES:]
        width = self.scrollable_content_region.width
        lines: list[str] = []
        for r in shown:
            day = r.time.date()
            if day != self._last_day:
                if self._last_day is not None or day != self._today():
                    lines.append(day_line(day))
                self._last_day = day
            lines.extend(wrapped(record_line(r), width))
        if lines:
            self.write_lines(lines)

    def _today(self) -> date:
        path = self._follower.path if self._follower else None
        stem = path.stem.rpartition("_")[2] if path else ""
        try:
            return date.fromisoformat(stem)
        except ValueError:
            return date.today()

    def _rewrite(self) -> None:
        self.clear()
        self._last_day = None
        self._write(list(self._records))

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width != self._width:
            self._width = width
            self._rewrite()

    def action_cycle_level(self) -> None:
        self.min_level = (self.min_level + 1) % len(LEVELS)
        self._rewrite()
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        level = LEVELS[self.min_level]
        shown = "all levels" if self.min_level == 0 else f"≥ {level}"
        path = self._follower.path if self._follower else None
        day = path.stem.rpartition("_")[2] if path else ""
        self.border_subtitle = f"{day} · {shown} · L: level" if day else shown

    @property
    def lines_text(self) -> list[str]:
        """The lines held (what scrolling shows), for tests."""
        return list(self.lines)
