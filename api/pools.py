"""Where the API's work runs, so that reads stay fast while long operations go on.

The manager's async methods all share the event loop's default executor, where a few long
backups can hold every thread and leave a `list` waiting behind them. The API therefore runs
reads (list, info, projects) through a small pool of its own, calling the manager's blocking
methods directly, and lets only a bounded number of long operations (create, restore, delete)
run at once; the others wait their turn, first come first served."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from core.errors import from_os_error

T = TypeVar("T")

#: Threads for reads: they are short, so a few serve many clients.
READ_THREADS = 4
#: Long operations run at once by default (a server option); more are queued.
MAX_RUNNING = 2


class ReadPool:
    """A thread pool only reads use, so they never wait behind a long operation's thread."""

    def __init__(self, threads: int = READ_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="api-read")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a read thread; an OSError becomes the NexusError the manager's own
        async methods would raise (the core's contract), so it maps to its HTTP status."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args))
        except OSError as exc:
            raise from_os_error(exc) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Slots:
    """At most `limit` holders at once; the others wait in arrival order. Used from the
    event loop's thread only.

    A place (`enqueue`) is a future resolved when its slot is handed over; until its waiter
    has taken it (`wait` returned), a handed-over slot is remembered, so that a waiter which
    never ran, or gave up, passes it on instead of leaking it (`forget`)."""

    def __init__(self, limit: int = MAX_RUNNING) -> None:
        if limit < 1:
            raise ValueError("at least one long operation must be allowed to run")
        self.limit = limit
        self.busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._handed: set[asyncio.Future[None]] = set()

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for it (never suspends)."""
        if self.busy < self.limit and not self.waiting:
            self.busy += 1
            return True
        return False

    def enqueue(self) -> asyncio.Future[None]:
        """A place in the queue, taken now (so nothing that comes later can pass it): a
        future resolved when the slot is handed over, at once if one is free."""
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.try_take():
            self._hand(place)
        else:
            self._waiters.append(place)
        return place

    async def wait(self, place: asyncio.Future[None]) -> None:
        """Wait for the slot of `place`; a wait cancelled gives its place (or slot) up."""
        try:
            await place
        except asyncio.CancelledError:
            self.forget(place)
            raise
        self._handed.discard(place)

    def forget(self, place: asyncio.Future[None]) -> None:
        """Give up a place whose waiter will not (or no longer) take its slot."""
        if place in self._handed:
            self._handed.discard(place)
            self.release()
        elif not place.done():
            place.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(place)

    async def take(self) -> None:
        """Take a slot, waiting for one to be handed over if none is free."""
        await self.wait(self.enqueue())

    def release(self) -> None:
        """Hand the slot to the longest waiting, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._hand(waiter)  # the slot passes on: `busy` stays as it is
                return
        self.busy -= 1

    def _hand(self, place: asyncio.Future[None]) -> None:
        place.set_result(None)
        self._handed.add(place)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        await self.take()
        try:
            yield
        finally:
            self.release()
