"""Repository locks on a real LocalStore, with real processes holding, dying and racing."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import Busy
from core.repo import locks
from core.repo.locks import (
    acquire,
    is_live_backup,
    list_locks,
    live_locks,
    remove_stale,
    try_acquire_exclusive,
)
from core.storage.local import LocalStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "backups" / "web")


def _iso(t: datetime) -> str:
    return t.isoformat()


def _plant(store: LocalStore, name: str, **fields: object) -> None:
    now = datetime.now(UTC)
    data = {
        "exclusive": False,
        "operation": "create",
        "backup_id": None,
        "pid": 4242,
        "pid_start": None,
        "host": "elsewhere",
        "boot_id": locks.BOOT_ID,
        "pidns": locks.PIDNS,
        "time": _iso(now),
        "refreshed": _iso(now),
    }
    data.update(fields)
    store.put(f"locks/{name}.json", json.dumps(data).encode())
    refreshed = datetime.fromisoformat(str(data["refreshed"]))
    if refreshed < now:  # written when it was last refreshed, as its holder does
        t = refreshed.timestamp()
        os.utime(store.path(f"locks/{name}.json"), (t, t))


def test_shared_locks_coexist_and_exclusive_is_busy(store: LocalStore) -> None:
    a = acquire(store, exclusive=False, operation="create", backup_id="b1")
    b = acquire(store, exclusive=False, operation="restore", timeout=0)
    assert len(live_locks(store)) == 2
    assert is_live_backup(store, "b1") and not is_live_backup(store, "b2")
    with pytest.raises(Busy) as exc:
        acquire(store, exclusive=True, operation="delete", timeout=0)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("project 'web' is busy: create of backup b1 by pid ")
    assert f"pid {os.getpid()} on {locks.HOST} since " in msg and msg.endswith(" UTC (and 1 more)")
    assert try_acquire_exclusive(store, "reclaim") is None
    assert len(list_locks(store)) == 2  # the losers left nothing behind
    a.release()
    b.release()
    with try_acquire_exclusive(store, "reclaim") as ex:
        assert ex is not None and ex.info.exclusive
        with pytest.raises(Busy, match=r"^project 'web' is busy: reclaim by pid \d+ on "):
            acquire(store, exclusive=False, operation="create", timeout=0)
        with pytest.raises(Busy):
            acquire(store, exclusive=True, operation="delete", timeout=0, project_id="other")
    assert list_locks(store) == []


def test_busy_waits_for_timeout_then_acquires_when_freed(store: LocalStore) -> None:
    held = acquire(store, exclusive=True, operation="delete")
    t0 = time.monotonic()
    with pytest.raises(Busy):
        acquire(store, exclusive=False, operation="create", timeout=0.3)
    assert 0.25 <= time.monotonic() - t0 < 2
    held.release()
    acquire(store, exclusive=False, operation="create", timeout=0.3).release()


def test_release_idempotent_and_file_mode(store: LocalStore) -> None:
    lock = acquire(store, exclusive=True, operation="delete", backup_id="b9")
    path = store.path(lock.name)
    assert lock.name.startswith("locks/") and lock.name.endswith(".json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_bytes())
    assert data["exclusive"] is True and data["operation"] == "delete"
    assert data["backup_id"] == "b9" and data["pid"] == os.getpid()
    assert data["pid_start"] == locks.process_start(os.getpid())
    assert data["host"] == locks.HOST
    datetime.fromisoformat(data["time"])
    datetime.fromisoformat(data["refreshed"])
    lock.release()
    lock.release()
    assert not path.exists() and lock.released
    with lock:  # exit releases again, harmlessly
        pass


def test_refresh_rewrites_lock(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "REFRESH_INTERVAL", 0.05)
    lock = acquire(store, exclusive=False, operation="create")
    first = json.loads(store.get(lock.name))["refreshed"]
    deadline = time.monotonic() + 5
    while json.loads(store.get(lock.name))["refreshed"] == first:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    lock.release()
    time.sleep(0.15)
    assert not store.exists(lock.name)  # not resurrected by a late refresh


def test_lock_broken_by_someone_is_not_resurrected(store: LocalStore) -> None:
    lock = acquire(store, exclusive=False, operation="create")
    store.delete(lock.name)
    lock.refresh()
    assert lock.lost and not store.exists(lock.name)
    lock.release()


HOLDER = """
import sys, time
from core.repo.locks import acquire
from core.storage.local import LocalStore
lock = acquire(LocalStore(sys.argv[1]), exclusive=sys.argv[2] == "x", operation="create",
               backup_id="b-dead")
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["x", "s"])
def test_lock_of_sigkilled_process_is_broken(store: LocalStore, kind: str) -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store.url, kind], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == b"held"
        assert is_live_backup(store, "b-dead")
        with pytest.raises(Busy, match=rf"by pid {p.pid} on "):
            acquire(store, exclusive=True, operation="delete", timeout=0)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    assert not is_live_backup(store, "b-dead")
    [dead] = list_locks(store)
    assert dead.stale and dead.pid == p.pid
    with acquire(store, exclusive=True, operation="delete", timeout=0) as lock:
        assert [i.name for i in list_locks(store)] == [lock.name]


def test_dead_pid_and_reused_pid_on_this_host_are_stale(store: LocalStore) -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    _plant(store, "dead", host=locks.HOST, pid=p.pid)
    me = os.getpid()
    _plant(store, "reused", host=locks.HOST, pid=me, pid_start=locks.process_start(me) + 1)
    _plant(store, "mine", host=locks.HOST, pid=me, pid_start=locks.process_start(me))
    by_name = {i.name: i.stale for i in list_locks(store)}
    assert by_name == {
        "locks/dead.json": True,
        "locks/reused.json": True,
        "locks/mine.json": False,
    }
    assert remove_stale(store) == 2
    assert [i.name for i in list_locks(store)] == ["locks/mine.json"]


def test_other_host_lock_goes_stale_by_age(store: LocalStore) -> None:
    _plant(store, "fresh", exclusive=True, operation="reclaim", host="host1", pid=1234)
    with pytest.raises(Busy, match=r"^project 'web' is busy: reclaim by pid 1234 on host1 since "):
        acquire(store, exclusive=False, operation="create", timeout=0)
    old = datetime.now(UTC) - timedelta(minutes=31)
    _plant(store, "fresh", exclusive=True, host="host1", time=_iso(old), refreshed=_iso(old))
    assert [i.stale for i in list_locks(store)] == [True]
    acquire(store, exclusive=False, operation="create", timeout=0).release()
    assert list_locks(store) == []


def test_garbage_lock_is_conservative_until_old(store: LocalStore) -> None:
    store.put("locks/garbage.json", b"\x00not json{")
    [info] = list_locks(store)
    assert info.unknown and not info.stale
    with pytest.raises(Busy, match=r"unreadable lock locks/garbage\.json"):
        acquire(store, exclusive=False, operation="create", timeout=0)
    old = time.time() - 31 * 60
    os.utime(store.path("locks/garbage.json"), (old, old))
    acquire(store, exclusive=False, operation="create", timeout=0).release()
    assert list_locks(store) == []


RACER = """
import os, sys, time
from core.repo.locks import acquire
from core.storage.local import LocalStore
store, marker, n = LocalStore(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    with acquire(store, exclusive=True, operation="delete", timeout=30):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            print("BOTH HELD THE LOCK", flush=True)
            sys.exit(3)
        time.sleep(0.002)
        os.close(fd)
        os.unlink(marker)
    with open(sys.argv[4], "a") as f:
        f.write("x")
"""


def test_racing_exclusive_acquirers_never_both_win(store: LocalStore, tmp_path: Path) -> None:
    n, procs = 25, 3
    marker, counter = tmp_path / "inside", tmp_path / "count"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, store.url, str(marker), str(n), str(counter)],
            cwd=REPO,
        )
        for _ in range(procs)
    ]
    for r in racers:
        assert r.wait(timeout=60) == 0
    assert counter.read_text() == "x" * (n * procs)
    assert list_locks(store) == []
