"""Per-project operation logs: one line per event, in daily files under `{root}/logs/`.

Several processes (the CLI, the API server, the TUI) may log to the same project at once, so
each line goes out in a single ``os.write`` on an ``O_APPEND`` descriptor: lines never
interleave and the file is readable while it grows. Nothing is buffered; a live view follows a
file with :class:`LogTail`, and code in the same process can :meth:`BackupLogger.subscribe`.

Nothing is written, renamed or removed through a link: `{root}/logs` is reached by descriptor
from the root with O_NOFOLLOW, and a log file is opened relative to it with O_NOFOLLOW and
written only when it is a regular file of one name (a hard link planted there would append to
its other name's file), so a link planted in the logs never reaches a file outside them
(invariant I12, docs/design.md).

Line format (UTC, level padded to 7, operation to 8, message with newlines escaped)::

    2026-11-29T03:12:03.123Z INFO    create   backup=<id or -> <message>
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from core.errors import InvalidInput
from core.ids import check_id

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_SEVERITY = {name: i for i, name in enumerate(LEVELS)}
_ALIASES = {"WARN": "WARNING", "CRITICAL": "ERROR", "FATAL": "ERROR"}
#: Longer messages are cut, so that one event stays one reasonably sized write.
MAX_MESSAGE = 64 * 1024
#: A LogTail reads at most this much per call, so a huge backlog cannot stall a UI tick.
TAIL_CHUNK = 4 * 1024 * 1024

_LINE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})Z "
    r"(DEBUG|INFO|WARNING|ERROR) +(\S+) +backup=(\S+)(?: (.*))?$"
)
_ESCAPES = {"n": "\n", "r": "\r", "\\": "\\"}
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNSAFE = re.compile(r"[\\\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPED = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|.)")
_WS = re.compile(r"\s+")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: O_NONBLOCK: a fifo planted at a log's name fails at once (ENXIO) instead of blocking.
_APPEND_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
)


def normalize_level(level: str | int) -> str:
    """One of LEVELS for a name (any case, "warn") or a std `logging` level number."""
    if isinstance(level, bool):
        raise ValueError(f"invalid log level {level!r}")
    if isinstance(level, int):
        if level >= logging.ERROR:
            return "ERROR"
        if level >= logging.WARNING:
            return "WARNING"
        return "INFO" if level >= logging.INFO else "DEBUG"
    name = str(level).strip().upper()
    name = _ALIASES.get(name, name)
    if name not in _SEVERITY:
        raise ValueError(f"invalid log level {level!r}: use one of {', '.join(LEVELS)}")
    return name


def _escape(message: str) -> str:
    """Backslash, newline and CR as \\\\, \\n, \\r; every other control character (and what
    str.splitlines() splits on) as \\xHH / \\uHHHH: one event stays one line for any reader,
    and a file name cannot smuggle terminal escapes into someone's `tail -f`."""
    return _UNSAFE.sub(_escape_char, message)


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    if c in _SHORT:
        return _SHORT[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def _unescape(text: str) -> str:
    return _ESCAPED.sub(_unescape_match, text)


def _unescape_match(m: re.Match[str]) -> str:
    code = m.group(1)
    if code[0] in "xu" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, m.group(0))


def _token(value: str | None, empty: str = "-") -> str:
    """Operation and backup id are space-separated fields: keep them one non-empty token."""
    if value is None:
        return empty
    return _WS.sub("_", str(value)) or empty


class LogRefused(OSError):
    """A link (or another file type) where the logs have their directory or a file: nothing
    is written, renamed or removed through it. An OSError, as every failure to log is."""


def _refused(where: Path, what: str = "a symbolic link (or hard link)") -> LogRefused:
    return LogRefused(f"{where} is {what}: nothing is written through it")


def _open_logs(root: int, where: Path, create: bool) -> int:
    """`logs` in the directory `root`, never through a link; made owner-only if missing."""
    try:
        return os.open("logs", _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=root)
    except FileNotFoundError:
        if not create:
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir("logs", 0o700, dir_fd=root)
        return _open_logs(root, where, False)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refused(where, "a symbolic link (or a file)") from None
        raise


def _open_append(logs: int, path: Path) -> int:
    """`path`'s file in the logs directory `logs`, to append to: refused unless it is a
    regular file of one name, checked on the descriptor that is then written."""
    try:
        fd = os.open(path.name, _APPEND_FLAGS, 0o600, dir_fd=logs)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink; a fifo with no reader
            raise _refused(path) from None
        raise
    try:
        own = _is_own_file(os.fstat(fd))
    except OSError:
        os.close(fd)
        raise
    if not own:
        os.close(fd)
        raise _refused(path)
    return fd


def _open_read(path: Path) -> int | None:
    """`path` opened to read, or None when it is missing or no regular file: a fifo or a
    device planted at a log's name must neither block a reader (the TUI's log pane, the API's
    log views) nor be read as a log."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
    except OSError:
        os.close(fd)
        raise
    return fd


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_own_file(st: os.stat_result) -> bool:
    """A regular file with no other name: appending to it changes no file outside the logs."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


class InvalidLogInput(InvalidInput, ValueError):
    """A project id (or day) that cannot name a log file; also a ValueError, like check_id's."""


def _checked_project(project_id: str) -> str:
    try:
        return check_id(project_id, "project_id")
    except ValueError as exc:
        raise InvalidLogInput(str(exc)) from None


@dataclass(frozen=True, slots=True)
class LogRecord:
    time: datetime  # UTC, millisecond precision
    level: str
    project_id: str
    operation: str
    backup_id: str | None
    message: str

    def format(self) -> str:
        """The line as written to the file, without its newline."""
        t = self.time if self.time.tzinfo else self.time.replace(tzinfo=UTC)
        t = t.astimezone(UTC)
        stamp = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        return (
            f"{stamp} {self.level:<7} {_token(self.operation):<8} "
            f"backup={_token(self.backup_id)} {_escape(self.message)}"
        )


def parse_line(line: str, project_id: str = "") -> LogRecord | None:
    """The record of one line, or None for a torn or foreign line (never raises).

    The line does not hold the project, which comes from the file name; pass it if known."""
    m = _LINE.match(line.rstrip("\n"))
    if not m:
        return None
    stamp, level, operation, backup, message = m.groups()
    try:
        time = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return None
    return LogRecord(
        time=time,
        level=level,
        project_id=project_id,
        operation=operation,
        backup_id=None if backup == "-" else backup,
        message=_unescape(message or ""),
    )


def _project_of(path: Path) -> str:
    """`web_2026-11-29.log` -> `web` (project ids may themselves contain `_`)."""
    stem = path.name.removesuffix(".log")
    head, sep, _day = stem.rpartition("_")
    return head if sep else stem


def _parse_lines(data: bytes, project_id: str) -> list[LogRecord]:
    text = data.decode("utf-8", "replace")
    return [r for r in (parse_line(ln, project_id) for ln in text.split("\n")) if r is not None]


class BackupLogger:
    """Writes and reads the per-project daily logs under `{root}/logs`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.logs_dir = self.root / "logs"
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[LogRecord], None]] = []
        #: The last failure to write a line: logging never fails the operation it records.
        self.last_error: OSError | None = None

    def path_for(self, project_id: str, day: date | str | None = None) -> Path:
        """The log file of a project for a UTC day (default today)."""
        project_id = _checked_project(project_id)
        if day is None:
            day = datetime.now(UTC).date()
        elif isinstance(day, str):
            try:
                day = date.fromisoformat(day)
            except ValueError:
                raise InvalidLogInput(f"invalid day {day!r}: use YYYY-MM-DD") from None
        elif isinstance(day, datetime):
            day = day.astimezone(UTC).date() if day.tzinfo else day.date()
        return self.logs_dir / f"{project_id}_{day.isoformat()}.log"

    @contextlib.contextmanager
    def _logs(self, *, create: bool) -> Iterator[int]:
        """A descriptor of `{root}/logs`, reached from the root (which may be a link: the
        user named it) without following a link; made when missing and `create` (the root
        too, by path). LogRefused for a link there, FileNotFoundError when missing."""
        try:
            root = os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            root = os.open(self.root, _DIR_FLAGS)
        try:
            logs = _open_logs(root, self.logs_dir, create)
        finally:
            os.close(root)
        try:
            yield logs
        finally:
            os.close(logs)

    def rename_project(self, old: str, new: str) -> None:
        """A renamed project's daily logs follow it (a day the new name already has a file
        for keeps both: the old one is left under its name). A link is left where it is."""
        old, new = _checked_project(old), _checked_project(new)
        with self._lock:
            try:
                with self._logs(create=False) as logs:
                    for name in os.listdir(logs):
                        day = name[len(old) + 1 : -len(".log")]
                        mine = name.startswith(f"{old}_") and name.endswith(".log")
                        if mine and _DAY.fullmatch(day):
                            self._rename_own(logs, name, self.path_for(new, day).name)
            except FileNotFoundError:
                return
            except OSError as exc:
                self.last_error = exc

    def _rename_own(self, logs: int, name: str, new_name: str) -> None:
        """Rename one log file in `logs`, never a link, never over an existing name."""
        with contextlib.suppress(OSError):
            if not _is_own_file(os.stat(name, dir_fd=logs, follow_symlinks=False)):
                self.last_error = _refused(self.logs_dir / name)
            elif not _exists_at(logs, new_name):
                os.rename(name, new_name, src_dir_fd=logs, dst_dir_fd=logs)

    def remove(self, project_id: str, day: date | str) -> None:
        """Delete one day's log file: unlinked in the logs directory reached without a link
        (a link at its name is removed, never followed). Missing is fine."""
        path = self.path_for(project_id, day)
        try:
            with self._logs(create=False) as logs:
                os.unlink(path.name, dir_fd=logs)
        except FileNotFoundError:
            return

    # -- writing

    def log(
        self,
        project_id: str,
        level: str | int,
        operation: str,
        message: str,
        backup_id: str | None = None,
    ) -> LogRecord:
        project_id = _checked_project(project_id)
        message = str(message)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " [truncated]"
        now = datetime.now(UTC)
        record = LogRecord(
            time=now.replace(microsecond=now.microsecond // 1000 * 1000),
            level=normalize_level(level),
            project_id=project_id,
            operation=_token(operation),
            backup_id=None if backup_id is None else _token(backup_id),
            message=message,
        )
        self._append(self.path_for(project_id, record.time.date()), record)
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            # a broken viewer must not break the operation it watches
            with contextlib.suppress(Exception):
                callback(record)
        return record

    def append(self, record: LogRecord) -> None:
        """Write a record as it is, in its own day's file (a demo re-dating its lines);
        subscribers are not told."""
        self._append(self.path_for(record.project_id, record.time), record)

    def _append(self, path: Path, record: LogRecord) -> None:
        data = (record.format() + "\n").encode("utf-8", "backslashreplace")
        try:
            with self._logs(create=True) as logs:
                fd = _open_append(logs, path)
                try:
                    view = memoryview(data)
                    while view:  # one write in practice; the loop only covers a short write
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
        except OSError as exc:
            self.last_error = exc

    def info(
        self, project_id: str, operation: str, message: str, backup_id: str | None = None
    ) -> LogRecord:
        return self.log(project_id, "INFO", operation, message, backup_id)

    def warning(
        self, project_id: str, operation: str, message: str, backup_id: str | None = None
    ) -> LogRecord:
        return self.log(project_id, "WARNING", operation, message, backup_id)

    def error(
        self, project_id: str, operation: str, message: str, backup_id: str | None = None
    ) -> LogRecord:
        return self.log(project_id, "ERROR", operation, message, backup_id)

    def debug(
        self, project_id: str, operation: str, message: str, backup_id: str | None = None
    ) -> LogRecord:
        return self.log(project_id, "DEBUG", operation, message, backup_id)

    # -- following and reading

    def subscribe(self, callback: Callable[[LogRecord], None]) -> Callable[[], None]:
        """Call `callback` (in the logging thread) with every record this process logs."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def read(
        self,
        project_id: str,
        day: date | str | None = None,
        *,
        level: str | int | None = None,
        limit: int | None = None,
    ) -> list[LogRecord]:
        """The records of one day's file, oldest first; `level` keeps that level and worse,
        `limit` the last ones. A missing file is an empty log; garbage lines are skipped."""
        fd = _open_read(self.path_for(project_id, day))
        if fd is None:
            return []
        with open(fd, "rb") as f:
            data = f.read()
        data = data[: data.rfind(b"\n") + 1]  # an unterminated tail is still being written
        records = _parse_lines(data, project_id)
        if level is not None:
            floor = _SEVERITY[normalize_level(level)]
            records = [r for r in records if _SEVERITY[r.level] >= floor]
        if limit is not None:
            records = records[-limit:] if limit > 0 else []
        return records

    def tail(self, project_id: str, *, from_end: bool = False) -> LogTail:
        """A LogTail of the project's log that moves on to the next file when the day turns."""
        _checked_project(project_id)
        return LogTail(lambda: self.path_for(project_id), project_id=project_id, from_end=from_end)


class LogTail:
    """Follows a log file that any process may append to, like `tail -F`: the one follower of
    the faces (the TUI's log pane) and of the engine (`BackupLogger.tail`).

    Remembers its offset; keeps a partial last line until it is complete; starts over (and
    says so: `read()`'s reset) when the file is replaced (another inode), shrinks or vanishes;
    a file that does not exist yet is empty. `path` may be a callable, re-evaluated at every
    read, to follow daily files: when it names another file (the day turned) the old one is
    read to its end first and the new one from its start, as one stream.

    Where it starts: at the beginning, at the end (`from_end`), or at the first line within
    the last `backlog` bytes (a view that shows the last lines never reads a large file
    whole). `max_behind`: when more than that is unread, skip ahead to the first line within
    the last `max_behind` bytes (for a view that only ever shows its last lines); without it,
    every line is read, at most TAIL_CHUNK bytes per call."""

    def __init__(
        self,
        path: str | os.PathLike[str] | Callable[[], Path | None],
        *,
        project_id: str | None = None,
        from_end: bool = False,
        backlog: int | None = None,
        max_behind: int | None = None,
    ) -> None:
        self._source = path
        self._project_id = project_id
        self._max_behind = max_behind
        self._path = self._resolve()
        self._offset = 0
        self._ident: tuple[int, int] | None = None
        self._pending = b""
        if from_end:
            self._skip_existing()
        elif backlog is not None:
            self._start_within(backlog)

    def _resolve(self) -> Path | None:
        src = self._source
        found = src() if callable(src) else src
        return None if found is None else Path(found)

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def project_id(self) -> str | None:
        return self._project_id

    def _skip_existing(self) -> None:
        """Start at the end of the last complete line, reading only the file's tail."""
        if self._path is None:
            return
        fd = _open_read(self._path)
        if fd is None:
            return
        with open(fd, "rb") as f:
            st = os.fstat(f.fileno())
            start = max(0, st.st_size - TAIL_CHUNK)
            f.seek(start)
            data = f.read(st.st_size - start)
        self._ident = (st.st_dev, st.st_ino)
        cut = data.rfind(b"\n")
        self._offset = start + cut + 1 if cut >= 0 else st.st_size
        self._pending = b""

    def _start_within(self, backlog: int) -> None:
        """Start at the first line that begins within the file's last `backlog` bytes."""
        if self._path is None:
            return
        try:
            fd = _open_read(self._path)
        except OSError:
            return
        if fd is None:
            return
        try:
            st = os.fstat(fd)
            self._ident = (st.st_dev, st.st_ino)
            self._offset = _line_start(fd, st.st_size, max(0, st.st_size - backlog))
        finally:
            os.close(fd)

    def read_new(self) -> list[LogRecord]:
        """The complete lines appended since the last call, parsed (garbage skipped)."""
        return self.read()[0]

    def read(self) -> tuple[list[LogRecord], bool]:
        """(the complete lines appended since the last call, reset): reset is True when the
        file followed was replaced, truncated or removed, so a view drops what it shows."""
        records: list[LogRecord] = []
        reset = False
        current = self._resolve()
        if current != self._path:
            if self._path is not None:
                more, reset = self._read_available()  # finish the old file first
                records += more
            self._path, self._offset, self._ident, self._pending = current, 0, None, b""
        if self._path is not None:
            more, again = self._read_available()
            records += more
            reset = reset or again
        return records, reset

    def _read_available(self) -> tuple[list[LogRecord], bool]:
        assert self._path is not None
        project_id = self._project_id if self._project_id is not None else _project_of(self._path)
        seen = self._ident is not None
        try:
            fd = _open_read(self._path)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EISDIR):
                return [], False
            raise
        if fd is None:  # missing (or no regular file): an empty log
            self._offset, self._ident, self._pending = 0, None, b""
            return [], seen
        reset = False
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if ident != self._ident or st.st_size < self._offset:
                reset = seen  # rotated or truncated: start over
                self._offset, self._pending = 0, b""
            self._ident = ident
            behind = st.st_size - self._offset
            if self._max_behind is not None and behind > self._max_behind:
                self._offset = _line_start(fd, st.st_size, st.st_size - self._max_behind)
                self._pending = b""
            size = min(st.st_size - self._offset, TAIL_CHUNK)
            data = os.pread(fd, size, self._offset) if size > 0 else b""
        finally:
            os.close(fd)
        self._offset += len(data)
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        if len(self._pending) > 2 * MAX_MESSAGE:  # a garbage run without newlines
            self._pending = b""
        return (_parse_lines(data[:cut], project_id) if cut else []), reset


def _line_start(fd: int, size: int, pos: int) -> int:
    """The offset of the first line that begins at or after `pos` (`size` if none does
    within TAIL_CHUNK): where to start reading so that no line is read from its middle."""
    if pos <= 0:
        return 0
    data = os.pread(fd, min(size - pos + 1, TAIL_CHUNK), pos - 1)
    cut = data.find(b"\n")
    return pos + cut if cut >= 0 else size
