"""Locks in a bucket shared by hosts whose clocks disagree: another host's lock ages by the
server's clock (its Last-Modified against a probe's), never by a mix of the hosts' clocks."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import Busy
from core.repo import locks
from core.storage import open_store


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _plant(store, name: str, refreshed: datetime) -> None:
    data = {
        "exclusive": True,
        "operation": "create",
        "backup_id": None,
        "pid": 4242,
        "pid_start": None,
        "host": "web-02",  # another host, whose clock is wrong
        "boot_id": "another-boot",
        "pidns": "another-ns",
        "time": _iso(refreshed),
        "refreshed": _iso(refreshed),
    }
    store.put(f"locks/{name}.json", json.dumps(data).encode())


def test_a_host_whose_clock_is_behind_keeps_its_lock(s3_url: str) -> None:
    """Its lock says 'refreshed two hours ago' by its own clock, but the server stamped it
    just now: it is live, and nobody takes the repository from under it."""
    store = open_store(s3_url).sub("backups/web")
    store.prepare()
    _plant(store, "behind", datetime.now(UTC) - timedelta(hours=2))
    [info] = locks.list_locks(store)
    assert not info.stale
    with pytest.raises(Busy, match="web-02"):
        locks.acquire(store, exclusive=True, operation="delete", timeout=0)
    assert store.exists("locks/behind.json")
    assert not [o.name for o in store.list("clock/")]  # the clock probe is gone


def test_a_lock_not_rewritten_for_stale_after_goes_stale_by_the_server(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock 'refreshed' in the future by its host's clock is still judged by the server's:
    once the server has not seen it rewritten for STALE_AFTER, it is stale and broken."""
    monkeypatch.setattr(locks, "STALE_AFTER", timedelta(seconds=2))
    store = open_store(s3_url).sub("backups/web")
    store.prepare()
    _plant(store, "ahead", datetime.now(UTC) + timedelta(days=1))
    assert not locks.list_locks(store)[0].stale
    time.sleep(3.1)  # Last-Modified has a resolution of one second
    assert locks.list_locks(store)[0].stale
    with locks.acquire(store, exclusive=True, operation="delete", timeout=0):
        assert [i.host for i in locks.list_locks(store)] == [locks.HOST]


def test_the_store_clock_is_the_servers(s3_url: str) -> None:
    store = open_store(s3_url)
    store.prepare()
    assert store.capabilities.server_clock
    assert abs((locks.store_now(store) - datetime.now(UTC)).total_seconds()) < 5
