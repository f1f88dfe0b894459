"""A store that counts its requests by kind and times them (issue 15's storage metrics).

It wraps any ObjectStore (the one `serve` uses) and forwards everything; the sub-stores and
range readers it hands out are wrapped too, so every request made through it is counted.
The counts live in one `RequestStats`, shared by the wrapper and its sub-stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: Each request method's kind (the `kind` label): what a user of object storage pays for.
KINDS = {
    "put": "put",
    "put_new": "put",
    "put_if_unchanged": "put",
    "put_file": "put",
    "get": "get",
    "get_range": "get",
    "read_ranges": "get",
    "exists": "head",
    "stat": "head",
    "list": "list",
    "children": "list",
    "delete": "delete",
    "delete_prefix": "delete",
}
#: Request latency buckets, in seconds (a local disk to a slow remote bucket).
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestStats:
    """Requests per kind and result, and a latency histogram per kind (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        #: kind -> (per-bucket counts, not cumulative, the last one +Inf; sum of seconds)
        self.latency: dict[str, tuple[list[int], float]] = {}

    def record(self, kind: str, ok: bool, seconds: float) -> None:
        slot = next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
        with self._lock:
            key = (kind, "success" if ok else "error")
            self.counts[key] = self.counts.get(key, 0) + 1
            buckets, total = self.latency.get(kind, ([0] * (len(BUCKETS) + 1), 0.0))
            buckets[slot] += 1
            self.latency[kind] = (buckets, total + seconds)

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, tuple[list[int], float]]]:
        with self._lock:
            return dict(self.counts), {k: (list(b), s) for k, (b, s) in self.latency.items()}


class InstrumentedStore:
    """Forwards to `inner`, recording each request of KINDS in `stats`."""

    def __init__(self, inner: Any, stats: RequestStats | None = None) -> None:
        self._inner = inner
        self.stats = stats if stats is not None else RequestStats()

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        kind = KINDS.get(name)
        if kind is None or not callable(value):
            return value
        if name == "list":
            return self._timed_iter(value, kind)
        return self._timed(value, kind)

    def _timed(self, fn: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            ok = False
            try:
                result = fn(*args, **kwargs)
                ok = True
                return result
            finally:
                self.stats.record(kind, ok, time.perf_counter() - t0)

        return call

    def _timed_iter(self, fn: Callable[..., Iterator[Any]], kind: str) -> Callable[..., Any]:
        """A listing is one request however it is paged: timed over the whole iteration."""

        def call(*args: Any, **kwargs: Any) -> Iterator[Any]:
            spent = 0.0
            ok = False
            it = fn(*args, **kwargs)
            try:
                while True:
                    t0 = time.perf_counter()
                    try:
                        item = next(it)
                    except StopIteration:
                        spent += time.perf_counter() - t0
                        ok = True
                        return
                    spent += time.perf_counter() - t0
                    try:
                        yield item
                    except GeneratorExit:  # the caller stopped early: not a failure
                        ok = True
                        raise
            finally:
                self.stats.record(kind, ok, spent)

        return call

    def sub(self, prefix: str) -> InstrumentedStore:
        return InstrumentedStore(self._inner.sub(prefix), self.stats)

    def reader(self) -> Any:
        return _InstrumentedReader(self._inner.reader(), self)


class _InstrumentedReader:
    """A RangeReader whose reads count as the store's GETs."""

    def __init__(self, inner: Any, store: InstrumentedStore) -> None:
        self._inner = inner
        self.get_range = store._timed(inner.get_range, "get")
        self.read_ranges = store._timed(inner.read_ranges, "get")

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> _InstrumentedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def instrumented(store: Any) -> InstrumentedStore | Any:
    """`store` with its requests counted: behind its cache when it has one (an S3 store), so
    that what is counted is what reaches the remote, not what the cache answered."""
    from core.storage.cache import CachedStore

    if isinstance(store, InstrumentedStore):
        return store
    if isinstance(store, CachedStore):
        if isinstance(store.inner, InstrumentedStore):
            return store
        return store.over(InstrumentedStore(store.inner))
    return InstrumentedStore(store)


def request_stats(store: Any) -> RequestStats | None:
    """The counts of a store `instrumented` made, or None."""
    from core.storage.cache import CachedStore

    if isinstance(store, CachedStore):
        store = store.inner
    return store.stats if isinstance(store, InstrumentedStore) else None
