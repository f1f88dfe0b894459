"""One thread feeding jobs to a pool, with memory bounded and failures handled once.

Restore, verify and copy each read or write in parallel while one thread walks their plan.
The rules they share live here: at most `workers * depth` jobs are submitted and not yet done
(each job holds buffers, so memory stays bounded however long the plan), the first failure
stops the feeding, and leaving the block waits for every job that runs, then raises the first
real failure (a job's `Cancelled` only when nothing else went wrong).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from core.errors import Cancelled


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

    @property
    def failed(self) -> bool:
        return bool(self._failures)

    def submit(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run `fn(*args)` on the pool once a slot is free; False (nothing run) once a job
        has failed: the feeder stops."""
        if self._failures:
            return False
        self._slots.acquire()
        self._pool.submit(fn, *args).add_done_callback(self._done)
        return True

    def _done(self, future: Future[Any]) -> None:
        self._slots.release()
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            self._failures.append(exc)
            if self._on_failure is not None:
                self._on_failure()

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
        real = [f for f in self._failures if not isinstance(f, Cancelled)]
        if real and (exc is None or isinstance(exc, Cancelled)):
            raise real[0]  # the feeder was cancelled because a job failed: say why
        if exc is None and self._failures:
            raise self._failures[0]
