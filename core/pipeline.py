"""One thread feeding jobs to a pool, with memory bounded and failures handled once.

Restore, verify and copy each read or write in parallel while one thread walks their plan.
The rules they share live here: at most `workers * depth` jobs are submitted and not yet done
(each job holds buffers, so memory stays bounded however long the plan), the first failure
stops the feeding, and leaving the block waits for every job that runs, then raises the first
real failure (a job's `Cancelled` only when nothing else went wrong).

`InPlace` decides where a job of many small files runs (the backup's read pass asks it too):
in the feeding thread while such jobs do not wait, on the pool once one did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from core.errors import Cancelled

T = TypeVar("T")


class InPlace:
    """Where the next job of many small files runs: in the thread that feeds the pool, or on
    the pool. Such a job is all Python and short system calls when its files are in the
    page cache: on the pool, it and the feeding thread passed the GIL back and forth at every
    call, between the cores (a context switch each, and the futex's cross-core wake-up: more
    system time than the job's own work). In place it costs only its own work. A job that
    waited (the disk, a remote store: its wall time over WAITED times its thread's CPU time,
    and longer than it by MIN_WAIT, so that a job of next to nothing is not judged by noise)
    sends the next PROBE_AFTER to the pool, whose jobs then overlap their waits, before the
    next is tried in place again."""

    WAITED = 2.0
    MIN_WAIT = 0.002  # seconds
    PROBE_AFTER = 16

    __slots__ = ("_pooled",)

    def __init__(self) -> None:
        self._pooled = 0  # jobs still to hand to the pool

    def here(self) -> bool:
        """Whether the next job is to run in place (else: on the pool)."""
        if self._pooled:
            self._pooled -= 1
            return False
        return True

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in this thread, timed for the next decision."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            if wall > self.WAITED * cpu and wall - cpu > self.MIN_WAIT:
                self._pooled = self.PROBE_AFTER


class Pipeline:
    def __init__(
        self,
        workers: int,
        *,
        depth: int = 4,
        name: str = "nexus-pipeline",
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers * depth)
        self._failures: list[BaseException] = []
        self._on_failure = on_failure
        self._idle = threading.Condition()
        self._in_flight = 0
        self._in_place = InPlace()

    def submit(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run `fn(*args)` on the pool once a slot is free; False (nothing run) once a job
        has failed: the feeder stops."""
        if self._failures:
            return False
        self._slots.acquire()
        with self._idle:
            self._in_flight += 1
        self._pool.submit(fn, *args).add_done_callback(self._done)
        return True

    def submit_small(self, fn: Callable[..., Any], *args: Any) -> bool:
        """As `submit`, for a job of many small files: run in this thread while such jobs
        do not wait (`InPlace`), on the pool otherwise. Its failure is a job's failure."""
        if self._failures:
            return False
        if not self._in_place.here():
            return self.submit(fn, *args)
        try:
            self._in_place.run(fn, *args)
        except BaseException as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: BaseException) -> None:
        self._failures.append(exc)
        if self._on_failure is not None:
            self._on_failure()

    def _done(self, future: Future[Any]) -> None:
        self._slots.release()
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            self._failed(exc)
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def raise_failure(self) -> None:
        """Raise the first failure of a job, if one failed (a real one before a cancel)."""
        if self._failures:
            real = [f for f in self._failures if not isinstance(f, Cancelled)]
            raise (real or self._failures)[0]

    def wait(self) -> None:
        """Until every job submitted has ended; then raise the first failure, if any."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0)
        self.raise_failure()

    def close(self) -> None:
        """Wait for the jobs and let the threads go (a pipeline is not fed after this)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:  # the feeder failed: jobs not started are dropped
            if self._on_failure is not None:
                self._on_failure()
            self._pool.shutdown(wait=True, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True)
        if exc is None or isinstance(exc, Cancelled):
            # a feeder cancelled because a job failed says why; a real failure of its own
            # is what it raises
            self.raise_failure()
