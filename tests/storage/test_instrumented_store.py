"""The request counter in front of serve's store (issue 15): every request counted once by
kind and result, timed, through sub-stores and range readers too (the contract tests run it
as the store "instrumented")."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.storage import ObjectNotFound
from core.storage.instrumented import BUCKETS, InstrumentedStore
from core.storage.local import LocalStore


def test_requests_are_counted_by_kind_and_result(tmp_path: Path) -> None:
    store = InstrumentedStore(LocalStore(tmp_path / "s"))
    store.prepare()  # not a request of KINDS: not counted
    store.put("a", b"1")
    store.put_new("b", b"22")
    sub = store.sub("dir")
    sub.prepare()
    sub.put("c", b"333")
    assert store.get("a") == b"1"
    with pytest.raises(ObjectNotFound):
        store.get("missing")
    assert store.exists("a") and store.stat("b").size == 2
    assert [o.name for o in store.list()] == ["a", "b", "dir/c"]
    listing = store.list()
    next(listing)
    listing.close()  # stopped early: one list request, not a failure
    with store.reader() as reader:
        assert reader.get_range("a", 0, 1) == b"1"
    store.delete("b")
    counts, latency = store.stats.snapshot()
    assert counts == {
        ("put", "success"): 3,
        ("get", "success"): 2,
        ("get", "error"): 1,
        ("head", "success"): 2,
        ("list", "success"): 2,
        ("delete", "success"): 1,
    }
    assert sum(latency["put"][0]) == 3 and len(latency["put"][0]) == len(BUCKETS) + 1
    assert latency["get"][1] >= 0.0
    assert store.url == store.inner.url and store.capabilities == store.inner.capabilities


def test_behind_a_cache_only_what_reaches_the_remote_is_counted(tmp_path: Path) -> None:
    from core.storage.cache import CachedStore
    from core.storage.instrumented import instrumented, request_stats
    from core.storage.memory import MemoryStore

    store = instrumented(CachedStore(MemoryStore().sub("p"), tmp_path / "cache"))
    assert isinstance(store, CachedStore) and instrumented(store) is store  # once only
    name = "index/" + "ab" * 32  # immutable: cached
    store.put(name, b"index bytes")
    assert store.get(name) == b"index bytes"  # from the remote, then cached
    assert store.get(name) == b"index bytes"  # from the cache
    stats = request_stats(store)
    assert stats is not None
    counts, _latency = stats.snapshot()
    assert counts[("get", "success")] == 1 and counts[("put", "success")] == 1
