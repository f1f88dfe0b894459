"""Progress and cancellation of a long operation, shared by the engine's worker threads.

The engine calls `advance()` as often as it likes; events go out at a bounded rate (and
always on a phase change and at the end), so a UI is never flooded. `check()` raises
Cancelled once the caller asked to stop, and the engine calls it between chunks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from core.errors import Cancelled
from core.models import ProgressEvent

Emit = Callable[[ProgressEvent], None]
#: The engine's wall clock: every time it stamps (created_at, completed_at, checked_at) is read
#: from one, so a demo or a test can pass a fixed one; durations stay on time.monotonic.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class OperationContext:
    def __init__(
        self,
        operation: str,
        project_id: str,
        backup_id: str | None = None,
        emit: Emit | None = None,
        cancel: threading.Event | None = None,
        min_interval: float = 0.1,
        clock: Clock = utc_now,
    ) -> None:
        self.operation = operation
        self.clock = clock
        self.project_id = project_id
        self.backup_id = backup_id
        self._emit = emit
        self.cancel = cancel or threading.Event()
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self._phase_started = self.started
        self._last_emit = 0.0
        self.phase = "starting"
        self.files_done = 0
        self.files_total: int | None = None
        self.bytes_done = 0
        self.bytes_total: int | None = None
        self.current: str | None = None
        self.last_event: ProgressEvent | None = None
        #: the counts of the last phase that did work, for the final event (see `finish`)
        self._work: tuple[int, int | None, int, int | None] | None = None

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def set_phase(
        self, phase: str, *, files_total: int | None = None, bytes_total: int | None = None
    ) -> None:
        with self._lock:
            if self.files_done or self.bytes_done:
                self._work = (self.files_done, self.files_total, self.bytes_done, self.bytes_total)
            self.phase = phase
            self._phase_started = time.monotonic()
            self.files_done = 0
            self.bytes_done = 0
            self.files_total = files_total
            self.bytes_total = bytes_total
            self.current = None
        self._send(force=True)

    def advance(self, files: int = 0, nbytes: int = 0, path: str | None = None) -> None:
        with self._lock:
            self.files_done += files
            self.bytes_done += nbytes
            if path is not None:
                self.current = path
        self._send()

    def finish(self, files: int | None = None, nbytes: int | None = None) -> None:
        """The final ("done") event carries the operation's totals, not the zeros of the short
        phase that ended it (a backup's "validating"): `files` and `nbytes` when the operation
        knows them (done and total alike), else the counts of the last phase that did work."""
        with self._lock:
            idle = not (self.files_done or self.bytes_done)
            if files is None and nbytes is None and idle and self._work is not None:
                self.files_done, self.files_total, self.bytes_done, self.bytes_total = self._work
            if files is not None:
                self.files_done = self.files_total = files
            if nbytes is not None:
                self.bytes_done = self.bytes_total = nbytes
            self.phase = "done"
            self.current = None
        self._send(force=True)

    def snapshot(self) -> ProgressEvent:
        now = time.monotonic()
        with self._lock:
            elapsed = now - self._phase_started
            rate = self.bytes_done / elapsed if elapsed > 0 else 0.0
            eta = None
            if self.bytes_total is not None and rate > 0:
                eta = max(0.0, (self.bytes_total - self.bytes_done) / rate)
            return ProgressEvent(
                operation=self.operation,  # type: ignore[arg-type]
                project_id=self.project_id,
                backup_id=self.backup_id,
                phase=self.phase,
                files_done=self.files_done,
                files_total=self.files_total,
                bytes_done=self.bytes_done,
                bytes_total=self.bytes_total,
                current_path=self.current,
                rate_bytes_per_second=rate,
                eta_seconds=eta,
                elapsed_seconds=now - self.started,
            )

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_emit < self._min_interval:
            return
        self._last_emit = now
        event = self.snapshot()
        self.last_event = event
        if self._emit is not None:
            self._emit(event)


class ProgressStream:
    """Progress as an async iterator: pass the stream as the `progress` callback, then
    `async for event in stream` until the operation's final ("done") event.

    The queue keeps only the newest events when the reader lags: progress is a state, and
    an old state is worth nothing once a newer one exists.
    """

    def __init__(self, maxsize: int = 64) -> None:
        import asyncio

        self._queue: asyncio.Queue[ProgressEvent | None] = asyncio.Queue(maxsize)

    def __call__(self, event: ProgressEvent) -> None:
        import asyncio

        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    def close(self) -> None:
        """End the iteration (call it when the operation ended without a "done" event)."""
        self(None)  # type: ignore[arg-type]

    def __aiter__(self) -> ProgressStream:
        return self

    async def __anext__(self) -> ProgressEvent:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        if event.phase == "done":
            self.close()
        return event
