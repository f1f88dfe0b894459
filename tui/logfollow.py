"""Follow a daily log file that any process may append to, in bounded memory and time.

Like `tail -F`: starts with the last lines only (never reads a whole large file), keeps the
offset, holds back a partial last line, starts over when the file is replaced, truncated or
the day (path) changes. A burst bigger than one read skips ahead, because the view only ever
shows its last `max_lines` anyway. Runs in a thread worker; touches no widget.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from core.logger import LogRecord, parse_line

BACKLOG_BYTES = 256 * 1024
CHUNK_BYTES = 1024 * 1024


class FileFollower:
    def __init__(self, path_for: Callable[[], Path | None], project_id: str) -> None:
        self._path_for = path_for
        self.project_id = project_id
        self.path: Path | None = None
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._pending = b""

    def read(self) -> tuple[list[LogRecord], bool]:
        """(new records, reset): reset means the view should drop what it shows."""
        path = self._path_for()
        reset = False
        if path != self.path:
            self.path, self._ident, self._offset, self._pending = path, None, 0, b""
            reset = True
        if path is None:
            return [], reset
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            if self._ident is not None:
                self._ident, self._offset, self._pending = None, 0, b""
                return [], True
            return [], reset
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            skip_partial = False
            if ident != self._ident or st.st_size < self._offset:
                reset = reset or self._ident is not None
                self._ident, self._pending = ident, b""
                self._offset = max(0, st.st_size - BACKLOG_BYTES)
                skip_partial = self._offset > 0
            if st.st_size - self._offset > CHUNK_BYTES:
                self._offset, self._pending = st.st_size - CHUNK_BYTES, b""
                skip_partial = True
            size = st.st_size - self._offset
            data = os.pread(fd, size, self._offset) if size > 0 else b""
        finally:
            os.close(fd)
        self._offset += len(data)
        if skip_partial:
            data = data[data.find(b"\n") + 1 :]
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        text = data[:cut].decode("utf-8", "replace")
        records = [
            r for r in (parse_line(line, self.project_id) for line in text.splitlines()) if r
        ]
        return records, reset
