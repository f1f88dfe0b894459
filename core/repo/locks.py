"""Per-project locks kept as objects under `locks/` in the project's ObjectStore (restic style).

Shared locks (backup, restore, verify) coexist; an exclusive one (delete, reclaim, cleanup)
excludes every other. Acquiring writes our lock first and then looks at the others: of two
racers at least one sees the other, so two exclusive holders can never both win (the loser
removes its lock and backs off). Locks live in the store rather than as flock()s so that they
work the same on an object-store backend and across hosts sharing a repository.

A lock is stale, and broken by the next acquirer it would exclude, when it has not been
refreshed for STALE_AFTER, or when its process is provably gone: only a lock made on this
very machine, in this boot and in this pid namespace (its `host`, `boot_id` and `pidns` all
equal ours) is judged by its pid (dead, or reused by another process, told by its start
time). A second machine with the same hostname, a container, or a lock of an older version
that did not record its boot is judged by age alone: a pid means nothing outside its
namespace. Holders refresh every REFRESH_INTERVAL from a daemon thread.

Lock objects are sealed with the plain codec in every repository, encrypted ones included
(core/repo/codec.py says why): any process sharing the store must judge them before, or
without, unlocking a key, and they hold nothing about the data.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import Busy, ReadOnly, from_os_error
from core.repo.codec import PLAIN, Kind
from core.storage import ObjectNotFound, ObjectStore
from core.utc import CLOCK_SKEW

PREFIX = "locks/"
#: The scheduled-run locks (issue 14): `run-due` holds one exclusively while it checks and
#: runs a project's schedule, so two never back the project up at once.
RUN_PREFIX = "run-locks/"
#: A lock not refreshed for this long is stale (unless its live process is on this host).
STALE_AFTER = timedelta(minutes=30)
#: How often a held lock is rewritten with a new `refreshed` (seconds).
REFRESH_INTERVAL = 300.0
#: Retry pause bounds while waiting for a conflicting lock (seconds).
BACKOFF = (0.02, 0.2)

HOST = socket.gethostname()


def _read_identity(path: str, link: bool = False) -> str | None:
    try:
        if link:
            return os.readlink(path)
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


#: This boot (a reboot or another machine has another) and this pid namespace (a container
#: has its own): a pid is only meaningful where both match.
BOOT_ID = _read_identity("/proc/sys/kernel/random/boot_id")
PIDNS = _read_identity("/proc/self/ns/pid", link=True)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime:
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def process_start(pid: int) -> int | None:
    """Start time of a process (clock ticks since boot, /proc/<pid>/stat field 22), or None
    where /proc is missing; a pid reused by a new process has another start time."""
    return _proc_stat(pid)[1]


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """(state, start time) of a process from /proc, (None, None) if unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None, None
    # the command name (field 2) may hold spaces and parens: fields resume after the last ')'
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None, None


def _pid_alive(pid: int, pid_start: int | None) -> bool | None:
    """True/False for a process on this host; None if it is alive but its identity is
    unknown (no start time recorded or readable)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    state, start = _proc_stat(pid)
    if state in ("Z", "X"):  # exited, not yet reaped
        return False
    if pid_start is None or start is None:
        return None
    return start == pid_start


def pid_alive(pid: int) -> bool:
    """Whether a process of this host may still be running (unknown counts as alive)."""
    return pid == os.getpid() or _pid_alive(pid, None) is not False


@dataclass(slots=True)
class LockInfo:
    name: str
    exclusive: bool
    operation: str
    backup_id: str | None
    pid: int
    pid_start: int | None
    host: str
    time: datetime
    refreshed: datetime
    boot_id: str | None = None
    pidns: str | None = None
    stale: bool = False
    unknown: bool = False  # the object could not be read or parsed

    @property
    def local(self) -> bool:
        """Made on this machine, in this boot and pid namespace: its pid can be checked."""
        return (
            self.host == HOST
            and self.boot_id is not None
            and self.boot_id == BOOT_ID
            and self.pidns is not None
            and self.pidns == PIDNS
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "exclusive": self.exclusive,
                "operation": self.operation,
                "backup_id": self.backup_id,
                "pid": self.pid,
                "pid_start": self.pid_start,
                "host": self.host,
                "boot_id": self.boot_id,
                "pidns": self.pidns,
                "time": _iso(self.time),
                "refreshed": _iso(self.refreshed),
            },
            indent=1,
        ).encode()

    def describe(self) -> str:
        """Who holds it, for a Busy message: `delete by pid 1234 on host1 since ...`."""
        since = self.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if self.unknown:
            return f"an unreadable lock {self.name} (since {since})"
        what = self.operation
        if self.backup_id:
            what += f" of backup {self.backup_id}"
        return f"{what} by pid {self.pid} on {self.host} since {since}"


def _is_stale(info: LockInfo, now: datetime) -> bool:
    old = now - info.refreshed > STALE_AFTER
    if info.unknown or not info.local:
        return old
    alive = _pid_alive(info.pid, info.pid_start)
    if alive is None:  # cannot tell a reused pid: fall back to the age
        return old
    return not alive


#: Where a probe object is written to read the store's clock (never under `locks/`).
CLOCK_PROBE = "clock/"


def store_now(store: ObjectStore) -> datetime:
    """The store's clock: on a server that stamps objects itself (S3), the Last-Modified of a
    probe object just written, so that lock ages never mix the clocks of several hosts."""
    if not store.capabilities.server_clock:
        return _now()
    name = f"{CLOCK_PROBE}{secrets.token_hex(8)}"
    store.put(name, b"")
    try:
        return datetime.fromtimestamp(store.stat(name).mtime, UTC)
    finally:
        with contextlib.suppress(OSError):
            store.delete(name)


def _load(store: ObjectStore, name: str, mtime: float, now: datetime) -> LockInfo | None:
    """The lock object `name`, or None if it vanished meanwhile."""
    try:
        raw = PLAIN.open(Kind.LOCK, store.get(name))
    except ObjectNotFound:
        return None
    except OSError:
        raw = b""
    try:
        d = json.loads(raw)
        info = LockInfo(
            name=name,
            exclusive=bool(d["exclusive"]),
            operation=str(d["operation"]),
            backup_id=None if d.get("backup_id") is None else str(d["backup_id"]),
            pid=int(d["pid"]),
            pid_start=None if d.get("pid_start") is None else int(d["pid_start"]),
            host=str(d["host"]),
            time=_parse_time(d["time"]),
            refreshed=_parse_time(d["refreshed"]),
            boot_id=None if d.get("boot_id") is None else str(d["boot_id"]),
            pidns=None if d.get("pidns") is None else str(d["pidns"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        t = datetime.fromtimestamp(mtime, UTC)
        # conservative: an unknown lock excludes everything until it is old
        info = LockInfo(name, True, "unknown", None, 0, None, "?", t, t, unknown=True)
    if store.capabilities.server_clock and not info.local:
        # another host's lock on a server with its own clock: its age is the server's time
        # since the holder last rewrote it, both read from the server
        info.refreshed = datetime.fromtimestamp(mtime, UTC)
    elif info.refreshed > now + CLOCK_SKEW:
        # From the future (another host's clock, a year typed wrong): its age is told by
        # when the object was last written, or it would never go stale.
        info.refreshed = datetime.fromtimestamp(mtime, UTC)
    else:
        # From the past: a host whose clock lags (NFS stamps the object in the server's
        # clock) is judged by its latest rewrite, so its live lock is never broken as old
        info.refreshed = max(info.refreshed, datetime.fromtimestamp(mtime, UTC))
    info.stale = _is_stale(info, now)
    return info


def list_locks(store: ObjectStore, prefix: str = PREFIX) -> list[LockInfo]:
    """Every lock in the store (under `prefix`), oldest first, with `stale` computed."""
    now = _now()
    found = [i for o in store.list(prefix) if (i := _load(store, o.name, o.mtime, now))]
    if store.capabilities.server_clock and any(not i.local for i in found):
        server_now = store_now(store)  # only when another host's lock must be judged
        for info in found:
            info.stale = _is_stale(info, server_now)
    return sorted(found, key=lambda i: (i.time, i.name))


def live_locks(store: ObjectStore) -> list[LockInfo]:
    return [i for i in list_locks(store) if not i.stale]


def remove_stale(store: ObjectStore) -> int:
    """Delete the stale locks; returns how many."""
    stale = [i for i in list_locks(store) if i.stale]
    for info in stale:
        store.delete(info.name)
    return len(stale)


def is_live_backup(store: ObjectStore, backup_id: str) -> bool:
    """Whether a live lock names this backup: tells a running backup from a dead one's."""
    return any(i.backup_id == backup_id for i in live_locks(store))


class RepoLock:
    """A held lock; refreshed in the background until released (also on `with` exit)."""

    def __init__(self, store: ObjectStore, info: LockInfo) -> None:
        self.store = store
        self.info = info
        self.name = info.name
        #: Set when a refresh found the lock object deleted by someone who judged it stale.
        self.lost = False
        self._released = False
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._refresh_loop, name=f"lock-refresh {info.name}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        kind = "exclusive" if self.info.exclusive else "shared"
        return f"<RepoLock {kind} {self.info.operation} {self.name}>"

    def __enter__(self) -> RepoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def released(self) -> bool:
        return self._released

    def _refresh_loop(self) -> None:
        last = time.time()
        # wake often and compare wall-clock time, so a refresh is not late after a suspend
        while not self._stop.wait(min(30.0, REFRESH_INTERVAL)):
            if time.time() - last >= REFRESH_INTERVAL:
                self.refresh()
                last = time.time()

    def refresh(self) -> None:
        """Rewrite the lock with a new `refreshed`; never resurrects a broken or released one."""
        with self._mutex:
            if self._released or self.lost:
                return
            try:
                if not self.store.exists(self.name):
                    self.lost = True
                    return
                self.info.refreshed = _now()
                self.store.put(self.name, PLAIN.seal(Kind.LOCK, self.info.to_json()))
            except OSError:
                pass  # try again next time; the lock stays valid for STALE_AFTER

    def release(self) -> None:
        """Remove the lock; calling it again is a no-op."""
        with self._mutex:
            if self._released:
                return
            self._released = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self.store.delete(self.name)


def _project_name(store: ObjectStore) -> str:
    """The project's id, as the last part of where its store lives."""
    return store.url.rstrip("/").rsplit("/", 1)[-1] or "repository"


def _busy(project_id: str, holders: list[LockInfo]) -> Busy:
    first = sorted(holders, key=lambda i: (not i.exclusive, i.time))[0]
    more = f" (and {len(holders) - 1} more)" if len(holders) > 1 else ""
    return Busy(f"project {project_id!r} is busy: {first.describe()}{more}")


def _conflicts(
    store: ObjectStore, own: str, exclusive: bool, prefix: str = PREFIX
) -> list[LockInfo]:
    """The live locks that exclude ours; stale ones that would are deleted on the way. A
    stale lock ours coexists with (a shared one, beside a reader's) is left to the next
    writer: a read-only command changes nothing of the repository but its own lock (I3)."""
    holders = []
    for info in list_locks(store, prefix):
        if info.name == own or not (exclusive or info.exclusive):
            continue
        if info.stale:
            store.delete(info.name)
        else:
            holders.append(info)
    return holders


def acquire(
    store: ObjectStore,
    *,
    exclusive: bool,
    operation: str,
    backup_id: str | None = None,
    timeout: float = 5.0,
    project_id: str | None = None,
    prefix: str = PREFIX,
) -> RepoLock:
    """Take a shared or exclusive lock, waiting up to `timeout` seconds (0: try once).

    Raises Busy naming the holder. `project_id` is only for the message (default: the
    store's directory name). `prefix`: another set of locks, with the same rules, that
    excludes only its own kind (RUN_PREFIX: one scheduled run at a time, beside the
    repository's locks, which it does not hold up)."""
    pid = os.getpid()
    host_tag = re.sub(r"[^A-Za-z0-9._-]", "_", HOST)[:64] or "host"
    name = f"{prefix}{host_tag}-{pid}-{secrets.token_hex(4)}.json"
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        now = _now()
        info = LockInfo(
            name=name,
            exclusive=exclusive,
            operation=operation,
            backup_id=backup_id,
            pid=pid,
            pid_start=process_start(pid),
            host=HOST,
            time=now,
            refreshed=now,
            boot_id=BOOT_ID,
            pidns=PIDNS,
        )
        try:
            store.put_new(name, PLAIN.seal(Kind.LOCK, info.to_json()))
            try:
                holders = _conflicts(store, name, exclusive, prefix)
            except BaseException:
                store.delete(name)
                raise
            if not holders:
                return RepoLock(store, info)
            store.delete(name)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnly(from_os_error(exc, "cannot lock the repository").args[0]) from exc
            raise from_os_error(exc, "cannot lock the repository") from exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _busy(project_id or _project_name(store), holders)
        time.sleep(min(remaining, random.uniform(*BACKOFF)))


def try_acquire_exclusive(store: ObjectStore, operation: str) -> RepoLock | None:
    """An exclusive lock if the project is free right now, else None (no waiting)."""
    try:
        return acquire(store, exclusive=True, operation=operation, timeout=0)
    except Busy:
        return None
