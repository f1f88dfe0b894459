"""Fault-injection harness shared by tests/reliability/ and scripts/soak.py.

Everything here works on real files and real processes: a warm "driver" process (a small
`python -c` program that imports the engine, says READY, then runs one operation read from its
stdin) is SIGKILLed after a seeded random delay, then a fresh BackupManager in this process
recovers the repository and the checks below decide whether anything was lost.

Nothing in here mocks the engine; the only liberty taken is a project config with small chunk
and pack sizes, so that a ~1 MiB tree makes dozens of chunks and packs (many write, fsync and
rename steps to be killed in) and a round takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parents[2]
for _path in (REPO_DIR, REPO_DIR / "tests"):  # the engine; tree_compare, shared with the suite
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from tree_compare import tree_snapshot  # noqa: E402

from core.errors import NexusError  # noqa: E402
from core.manager import BackupManager  # noqa: E402
from core.models import BackupStatus, BackupType, CreateRequest, RestoreRequest  # noqa: E402
from core.repo import manifest as mf  # noqa: E402
from core.repo.repository import Repository  # noqa: E402
from core.storage.local import atomic_write  # noqa: E402

PROJECT = "rel"
SMALL_CHUNKER = {"avg_size": 16384, "min_size": 4096, "max_size": 65536}
SMALL_PACK = 128 * 1024
RESTORE_TMP = ".nexus-restore-"
STORE_TMP = ".tmp-"

Snapshot = dict[bytes, tuple]


def env_seed(default: int | None = None) -> int:
    """NEXUS_REL_SEED if set, else `default`, else a fresh random seed (printed by callers)."""
    raw = os.environ.get("NEXUS_REL_SEED")
    if raw:
        return int(raw)
    return default if default is not None else random.SystemRandom().randrange(1, 2**31)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------------------------
# Repositories and trees
# --------------------------------------------------------------------------------------------


def init_project(root: Path, project: str = PROJECT, *, small: bool = True) -> None:
    """Create a project; with `small`, its config asks for small chunks and packs."""
    root.mkdir(parents=True, exist_ok=True)
    BackupManager(root)  # the root's layout
    repo = Repository(root, project)
    repo.init()
    if small:
        path = repo.store.path("config.json")  # type: ignore[attr-defined]
        config = json.loads(path.read_bytes())
        config["chunker"].update(SMALL_CHUNKER)
        config["pack_size"] = SMALL_PACK
        atomic_write(path, json.dumps(config, indent=2).encode())


def snapshot(top: Path | str) -> Snapshot:
    """Every entry below `top`: ("f", bytes, mode) / ("d", mode) / ("l", target); that is
    tree_compare's snapshot without the mtimes (a restore of an earlier state sets others)."""
    return {
        rel: entry[:3] if entry[0] == "f" else entry
        for rel, entry in tree_snapshot(Path(top)).items()
    }


def diff_trees(want: Snapshot, got: Snapshot, limit: int = 8) -> list[str]:
    """Human-readable differences (empty when equal)."""
    out = []
    for key in sorted(set(want) | set(got)):
        a, b = want.get(key), got.get(key)
        if a == b:
            continue
        show = key.decode("utf-8", "backslashreplace")
        if a is None:
            out.append(f"unexpected {show}")
        elif b is None:
            out.append(f"missing {show}")
        elif a[0] != b[0]:
            out.append(f"{show}: kind {a[0]} != {b[0]}")
        elif a[0] == "f" and a[1] != b[1]:
            out.append(f"{show}: content differs ({len(a[1])} vs {len(b[1])} bytes)")
        else:
            out.append(
                f"{show}: {a[2:] if a[0] == 'f' else a[1:]} != {b[2:] if b[0] == 'f' else b[1:]}"
            )
        if len(out) >= limit:
            out.append("...")
            break
    return out


def materialize(snap: Snapshot, top: Path) -> None:
    """Write a snapshot out as a tree (the restore target's 'old' content)."""
    top.mkdir(parents=True, exist_ok=True)
    base = os.fsencode(top)
    for rel in sorted(snap, key=lambda r: r.count(b"/")):
        kind, *rest = snap[rel]
        full = os.path.join(base, rel)
        if kind == "d":
            os.makedirs(full, exist_ok=True)
        elif kind == "l":
            os.symlink(rest[0], full)
        else:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(rest[0])
            os.chmod(full, rest[1])


def random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def build_source(rng: random.Random, top: Path, *, files: int = 40, max_size: int = 64_000) -> None:
    """A small project: nested dirs, text and incompressible files, a symlink, an empty dir."""
    top.mkdir(parents=True, exist_ok=True)
    (top / "empty").mkdir(exist_ok=True)
    for i in range(files):
        sub = top / f"d{i % 5}" / (f"e{i % 3}" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        size = rng.randrange(0, max_size)
        data = random_bytes(rng, size) if i % 3 else (b"line %d\n" % i) * (size // 8)
        (sub / f"f{i:03}.bin").write_bytes(data)
    with contextlib.suppress(FileExistsError):
        os.symlink("d0/f000.bin", top / "link")


def mutate_source(rng: random.Random, top: Path) -> None:
    """Between rounds: change some files, add one, remove one (so backups differ and share)."""
    files = sorted(p for p in top.rglob("*.bin") if p.is_file())
    for p in rng.sample(files, k=max(1, len(files) // 5)):
        data = bytearray(p.read_bytes() or b"x")
        pos = rng.randrange(len(data))
        data[pos : pos + 64] = random_bytes(rng, 64)
        p.write_bytes(bytes(data))
    if files and rng.random() < 0.5:
        rng.choice(files).unlink()
    (top / f"d{rng.randrange(5)}" / f"n{rng.randrange(10**6):06}.bin").write_bytes(
        random_bytes(rng, rng.randrange(1, 50_000))
    )


# --------------------------------------------------------------------------------------------
# Versioned content: every whole version is recognisable, a torn mix is not
# --------------------------------------------------------------------------------------------

_UNIT = re.compile(rb"^<([A-Za-z0-9_.-]+)\|v(\d{8})\|s(\d{10})>")


def versioned(tag: str, version: int, size: int) -> bytes:
    """`<tag|vNNNNNNNN|sSSSSSSSSSS>` repeated to exactly `size` bytes."""
    unit = b"<%s|v%08d|s%010d>" % (tag.encode(), version, size)
    return (unit * (size // len(unit) + 1))[:size]


def whole_version(data: bytes) -> tuple[str, int] | None:
    """(tag, version) if `data` is exactly one whole version, else None (torn or foreign)."""
    m = _UNIT.match(data)
    if m is None:
        return None
    tag, version, size = m.group(1).decode(), int(m.group(2)), int(m.group(3))
    if size != len(data) or data != versioned(tag, version, size):
        return None
    return tag, version


# --------------------------------------------------------------------------------------------
# Driver processes
# --------------------------------------------------------------------------------------------

DRIVER = r"""
import asyncio, json, os, sys, traceback
sys.path.insert(0, os.environ["NEXUS_REL_REPO"])
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest, BackupType
from core.errors import NexusError
import cli.main
sys.stdout.write("READY\n"); sys.stdout.flush()
cmd = json.loads(sys.stdin.readline())
# "die_at": N: SIGKILL itself right before its N-th mutating call (0: only count them)
die_at = cmd.get("die_at")
calls = [0]
if die_at is not None:
    import signal
    def _counting(fn):
        def call(*a, **k):
            calls[0] += 1
            if calls[0] == die_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **k)
        return call
    for _name in ("replace", "rename", "unlink", "remove", "rmdir", "fsync"):
        setattr(os, _name, _counting(getattr(os, _name)))

async def work():
    op = cmd["op"]
    mgr = BackupManager(cmd["root"])
    if op == "create":
        meta = await mgr.create(CreateRequest(project_id=cmd["project"], data_dir=cmd["data_dir"],
                                              backup_type=BackupType(cmd.get("type", "full")),
                                              data_dir_change=True))
        return {"id": meta.id, "warnings": meta.stats.warnings}
    if op == "restore":
        res = await mgr.restore(RestoreRequest(project_id=cmd["project"],
            backup_id=cmd["backup_id"], restore_dir=cmd["restore_dir"],
            overwrite=cmd.get("overwrite", "if-changed"), checkpoint=cmd.get("checkpoint", True),
            delete_extra=cmd.get("delete", False)))
        return {"written": res.files_written, "checkpoint": res.checkpoint_id}
    if op == "rebuild-index":
        res = await mgr.rebuild_index(cmd["project"])
        return {"chunks": res.chunks_indexed, "damaged": res.damaged_packs}
    if op == "delete":
        res = await mgr.delete(cmd["project"], cmd["backup_id"])
        return {"deleted": res.backup_id, "reclaimed": res.bytes_reclaimed,
                "packs_deleted": res.packs_deleted, "packs_rewritten": res.packs_rewritten}
    if op == "forget":
        from core.retention import Policy
        res = await mgr.forget(cmd["project"], Policy(keep_last=cmd["keep_last"],
                                                       grace_hours=cmd["grace_hours"]))
        return {"removed": res.removed, "purged": res.purged}
    raise SystemExit("unknown op " + op)

try:
    if cmd["op"] == "cli":  # the program itself (it runs its own event loop)
        out = {"exit": cli.main.main(cmd["argv"])}
    else:
        out = asyncio.run(work())
        if die_at is not None:
            out["store_ops"] = calls[0]
    sys.stdout.write("DONE " + json.dumps(out) + "\n")
except NexusError as exc:
    sys.stdout.write("ERROR " + type(exc).__name__ + ": " + str(exc) + "\n")
except BaseException:
    sys.stdout.write("CRASH " + json.dumps(traceback.format_exc()) + "\n")
sys.stdout.flush()
"""


def can_drop_privileges() -> str | None:
    """None when the tests can run a process as `nobody` (65534), else the reason."""
    if os.geteuid() != 0:
        return "not running as root: cannot chown a tree to another user and setuid to it"
    return None


def driver_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NEXUS_REL_REPO"] = str(REPO_DIR)
    env["PYTHONPATH"] = str(REPO_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NEXUS_DEBUG", None)
    return env


class Driver:
    """One warm process: started, imported, waiting for its single command."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=driver_env(),
            cwd=str(REPO_DIR),
        )
        self.ready = False

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        if not self.ready:
            line = _readline(self.proc.stdout.fileno(), timeout)
            if line.strip() != b"READY":
                err = self.proc.stderr.read() if self.proc.stderr else b""
                raise RuntimeError(f"driver did not start: {line!r} {err[-2000:]!r}")
            self.ready = True

    def send(self, cmd: dict) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        return time.monotonic()

    def wait_result(self, timeout: float = 120.0) -> None:
        """Block until the driver printed its result line (kept for finish())."""
        assert self.proc.stdout is not None
        line = _readline(self.proc.stdout.fileno(), timeout)
        self._early = line

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)

    def finish(self, timeout: float = 60.0) -> tuple[str, str]:
        """Wait for the process; (status line kind, rest): DONE / ERROR / CRASH / KILLED."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            return "HUNG", err.decode(errors="replace")[-2000:]
        out = getattr(self, "_early", b"") + out
        for line in out.decode(errors="replace").splitlines():
            kind, _, rest = line.partition(" ")
            if kind in ("DONE", "ERROR", "CRASH"):
                return kind, rest
        if self.proc.returncode == -signal.SIGKILL:
            return "KILLED", ""
        return "EXIT", f"rc={self.proc.returncode} {err.decode(errors='replace')[-2000:]}"


def _readline(fd: int, timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf


class DriverPool:
    """Keeps one warm driver ahead, so a round never waits for Python to start."""

    def __init__(self) -> None:
        self._spare: Driver | None = Driver()

    def get(self) -> Driver:
        d = self._spare or Driver()
        self._spare = Driver()
        d.wait_ready()
        return d

    def close(self) -> None:
        if self._spare is not None:
            self._spare.kill()
            self._spare.finish(timeout=10)
            self._spare = None


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def project_dir(root: Path, project: str = PROJECT) -> Path:
    return root / "backups" / project


def lock_files(root: Path, project: str = PROJECT) -> list[Path]:
    d = project_dir(root, project) / "locks"
    return sorted(d.iterdir()) if d.is_dir() else []


def store_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if STORE_TMP in p.name]


def restore_temp_files(top: Path) -> list[bytes]:
    out = []
    for dirpath, dirs, files in os.walk(os.fsencode(top)):
        out += [
            os.path.join(dirpath, n) for n in files + dirs if n.startswith(RESTORE_TMP.encode())
        ]
    return out


def pack_names(root: Path, project: str = PROJECT) -> set[str]:
    d = project_dir(root, project) / "packs"
    return {p.name for p in d.rglob("*") if p.is_file() and STORE_TMP not in p.name}


def manifest_exists(root: Path, backup_id: str, project: str = PROJECT) -> bool:
    return (project_dir(root, project) / f"backup_{backup_id}" / "data" / "manifest.zst").exists()


def packs_to_rewrite(root: Path, backup_id: str, project: str = PROJECT) -> int:
    """How many packs deleting `backup_id` must rewrite: those holding a chunk only it
    needs next to a chunk another completed backup needs (as core.ops.reclaim decides)."""
    repo = Repository(root, project)
    index = repo.refresh_index()
    own: set[bytes] = set()
    needed: set[bytes] = set()
    for meta in repo.list_metadata()[0]:
        if meta.status != BackupStatus.COMPLETED:
            continue
        chunks = {
            bytes.fromhex(h)
            for e in mf.iter_entries(repo.read_manifest(meta.id))
            if e.kind == mf.FILE
            for h, _n in e.chunks
        }
        (own if meta.id == backup_id else needed).update(chunks)
    only = own - needed
    return sum(
        1
        for blobs in index.packs().values()
        if any(d in only for d, _loc in blobs) and any(d in needed for d, _loc in blobs)
    )


async def restore_to(mgr: BackupManager, backup_id: str, target: Path, project: str = PROJECT):
    if target.exists():
        shutil.rmtree(target)
    return await mgr.restore(
        RestoreRequest(project_id=project, backup_id=backup_id, restore_dir=str(target))
    )


async def assert_all_restore(
    mgr: BackupManager,
    expected: dict[str, Snapshot],
    scratch: Path,
    project: str = PROJECT,
    context: str = "",
    verify: bool = True,
) -> None:
    """Every backup in `expected` is COMPLETED, verifies, and restores byte-exact."""
    metas = {m.id: m for m in await mgr.list(project)}
    for backup_id, want in expected.items():
        meta = metas.get(backup_id)
        assert meta is not None, f"{context}: completed backup {backup_id} vanished"
        assert meta.status == BackupStatus.COMPLETED, f"{context}: {backup_id} is {meta.status}"
        if verify:
            v = await mgr.verify(project, backup_id)
            assert v.ok, f"{context}: {backup_id} fails verify: {v.damaged_files[:3]} {v.errors}"
        target = scratch / f"check-{backup_id}"
        await restore_to(mgr, backup_id, target, project)
        got = snapshot(target)
        shutil.rmtree(target)
        problems = diff_trees(want, got)
        assert not problems, f"{context}: {backup_id} does not restore byte-exact: {problems}"


async def assert_repo_clean(mgr: BackupManager, root: Path, project: str = PROJECT, context=""):
    """After recovery: full check passes (orphan packs are only a warning), no lock or temp
    file is left, nothing is left in progress. Recovery is what the next writing command
    runs first (readers never write), run here on its own."""
    await mgr.recover(project)
    result = await mgr.check(project, read_data=True)
    assert result.ok, f"{context}: check failed: {result.errors[:5]}"
    assert not lock_files(root, project), f"{context}: locks left: {lock_files(root, project)}"
    assert not store_temp_files(root), f"{context}: temp files left: {store_temp_files(root)[:5]}"
    for m in await mgr.list(project):
        assert m.status in (BackupStatus.COMPLETED, BackupStatus.FAILED), (
            f"{context}: {m.id} left {m.status}"
        )
        if m.status == BackupStatus.FAILED:
            assert not manifest_exists(root, m.id, project), f"{context}: FAILED {m.id} kept data"


# --------------------------------------------------------------------------------------------
# Kill rounds
# --------------------------------------------------------------------------------------------


@dataclass
class KillStats:
    rounds: int = 0
    faults: Counter = field(default_factory=Counter)  # kind -> kills injected
    landed: Counter = field(default_factory=Counter)  # "create:interrupted", "delete:finished"...
    verified: int = 0  # backup restores compared byte for byte
    lost: list[str] = field(default_factory=list)
    restore_temp_left: int = 0
    log: list[str] = field(default_factory=list)
    rewrites: Counter = field(default_factory=Counter)  # delete-rewrite rounds: packs to rewrite
    recoveries: int = 0  # CLI commands run after a kill, before the checks
    step_kills: Counter = field(default_factory=Counter)  # kind -> kills at a counted call

    def summary(self) -> str:
        return (
            f"rounds={self.rounds} faults={dict(self.faults)} landed={dict(self.landed)} "
            f"verified={self.verified} restore_temp_files_left={self.restore_temp_left} "
            f"step_kills={dict(self.step_kills)} recoveries={self.recoveries} "
            f"rewrite_rounds={dict(self.rewrites)} "
            f"lost={len(self.lost)}"
        )


@dataclass(frozen=True)
class KillAt:
    """When a round's process is killed: `delay` seconds after the command was sent, or, with
    `after_marker`, that long after the operation was first seen changing something."""

    delay: float
    after_marker: bool = False


class KillCampaign:
    """One repository, a source tree that changes between rounds, and the backups that were
    COMPLETED so far (with the tree each one must restore to)."""

    def __init__(self, base: Path, seed: int, pool: DriverPool, stats: KillStats) -> None:
        self.base = base
        self.seed = seed
        self.rng = random.Random(seed)
        self.pool = pool
        self.stats = stats
        self.root = base / "repo"
        self.src = base / "src"
        self.scratch = base / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        init_project(self.root)
        build_source(self.rng, self.src)
        self.expected: dict[str, Snapshot] = {}
        self.durations: dict[str, list[float]] = {}
        self.steps: dict[str, int] = {}  # mutating calls an unkilled run of each kind made
        self.starts: dict[str, list[float]] = {}
        self.round_no = 0

    # -- plumbing --

    def _delay(self, kind: str) -> KillAt:
        """A seeded random kill point. Calibration rounds measured how long the operation takes
        (T) and when it starts changing the repository or the target (S, after the process
        has opened the repository and taken its lock). One kill in three waits for that change
        to be seen and lands a random moment into the rest of the operation (so a kill inside
        it does not hang on timing that a loaded machine can shift); of the others, four in
        five land in S..T after the command, the rest anywhere in 0..T (startup included)."""
        seen = sorted(self.durations.get(kind, [])[-5:]) or [0.3]
        typical = seen[len(seen) // 2]
        starts = sorted(self.starts.get(kind, [])[-5:]) or [0.0]
        start = min(starts[len(starts) // 2], typical * 0.8)
        pick = self.rng.random()
        if pick < 1 / 3:
            return KillAt(self.rng.uniform(0.0, (typical - start) * 0.5), after_marker=True)
        if pick < 1 / 3 + 2 / 3 * 0.8:
            return KillAt(self.rng.uniform(start * 0.9, typical * 1.1))
        return KillAt(self.rng.uniform(0.0, typical * 1.1))

    def _calibrate(
        self,
        kind: str,
        started: float,
        done: Callable[[float], bool],
        marker: Callable[[], bool] | None,
    ) -> None:
        """Wait (polling `marker` every millisecond) until `done(timeout)` is true; record the
        operation's duration and the moment `marker` first held."""
        inside = None
        deadline = started + 120
        while not done(0.001):
            if inside is None and marker is not None and marker():
                inside = time.monotonic() - started
            if time.monotonic() > deadline:
                raise AssertionError(f"{kind} did not finish in 120 s")
        self.durations.setdefault(kind, []).append(time.monotonic() - started)
        if inside is not None:
            self.starts.setdefault(kind, []).append(inside)

    def _kill_after(
        self, cmd: dict, kind: str, kill: KillAt | None, marker: Callable[[], bool] | None = None
    ) -> tuple[str, str, float]:
        d = self.pool.get()
        started = d.send(cmd)
        assert d.proc.stdout is not None
        fd = d.proc.stdout.fileno()

        def answered(timeout: float) -> bool:
            return bool(select.select([fd], [], [], timeout)[0])

        if kill is None:  # calibration: let it finish; time it to its result line
            self._calibrate(kind, started, answered, marker)
            return (*d.finish(), 0.0)
        self._wait_kill_point(kill, answered, marker)
        elapsed = time.monotonic() - started
        d.kill()
        kind_line, rest = d.finish()
        return kind_line, rest, elapsed

    def _kill_at_step(
        self, cmd: dict, kind: str, kill: KillAt | None, marker: Callable[[], bool] | None
    ) -> tuple[str, str, float]:
        """Like `_kill_after`, but in two rounds of three the kill lands right before one of
        the mutating system calls (replace, rename, unlink, rmdir, fsync) an unkilled run of
        `kind` counted, picked at random: every step of a short operation is reached, however
        fast it runs. Unkilled (calibration) runs count those calls."""
        if kill is None:
            line, rest, delay = self._kill_after({**cmd, "die_at": 0}, kind, None, marker)
            if line == "DONE":
                self.steps[kind] = int(json.loads(rest).get("store_ops", 0))
            return line, rest, delay
        steps = self.steps.get(kind, 0)
        if not steps or self.round_no % 3 == 0:
            return self._kill_after(cmd, kind, kill, marker)
        d = self.pool.get()
        started = d.send({**cmd, "die_at": self.rng.randint(1, steps)})
        line, rest = d.finish(timeout=120)
        self.stats.step_kills[kind] += 1
        return line, rest, max(time.monotonic() - started, 1e-6)

    @staticmethod
    def _wait_kill_point(
        kill: KillAt, done: Callable[[float], bool], marker: Callable[[], bool] | None
    ) -> None:
        """Sleep until the kill point: `kill.delay` after the command, or after `marker` first
        holds (polled every half millisecond; given up when the operation ends first)."""
        if kill.after_marker and marker is not None:
            deadline = time.monotonic() + 120
            while not marker():
                if done(0.0005) or time.monotonic() > deadline:
                    return
        time.sleep(kill.delay)

    def _note(self, text: str) -> None:
        self.stats.log.append(f"[seed {self.seed} round {self.round_no}] {text}")

    def _fresh(self) -> BackupManager:
        return BackupManager(self.root)

    # -- the operations --

    async def create_round(
        self, kill: KillAt | None, *, cli: str | None = None, verify: bool = True
    ) -> str | None:
        """Returns the id of the backup it COMPLETED (None when the kill stopped it)."""
        mutate_source(self.rng, self.src)
        want = snapshot(self.src)
        before = {m.id for m in await self._fresh().list(PROJECT)}
        if cli is None:
            cmd = {
                "op": "create",
                "root": str(self.root),
                "project": PROJECT,
                "data_dir": str(self.src),
                "type": self.rng.choice(["full", "incremental"]),
            }
        else:
            cmd = {
                "op": "cli",
                "argv": [
                    "--root",
                    str(self.root),
                    "--json",
                    "create",
                    PROJECT,
                    str(self.src),
                    "--data-dir-change",
                    "--type",
                    self.rng.choice(["full", "incremental", "snapshot"]),
                ],
            }
        kind = {None: "create", "warm": "cli-create", "exec": "exec-create"}[cli]
        pdir = project_dir(self.root)
        count = len(list(pdir.glob("backup_*")))

        def marker() -> bool:  # the new backup's directory exists
            return len(list(pdir.glob("backup_*"))) > count

        if cli == "exec":
            line, rest, delay = self._exec_kill(cmd["argv"], kind, kill, marker)
        else:
            line, rest, delay = self._kill_after(cmd, kind, kill, marker)
        self._check_driver(line, rest)
        mgr = self._fresh()
        await mgr.recover(PROJECT)  # what the next writing command does first
        new = [m for m in await mgr.list(PROJECT) if m.id not in before]
        assert len(new) <= 1, f"seed {self.seed}: one create made {len(new)} backups"
        where = "before-metadata"
        completed = None
        for m in new:
            if m.status == BackupStatus.COMPLETED:
                self.expected[m.id] = want
                where = "after-completed"
                completed = m.id
            else:
                assert m.status == BackupStatus.FAILED, f"seed {self.seed}: {m.id} {m.status}"
                assert "interrupted" in (m.error_message or ""), m.error_message
                assert not manifest_exists(self.root, m.id), f"{m.id}: partial manifest left"
                where = "interrupted"
        self._count(kind, delay, where)
        if verify:
            await self._verify_all(mgr)
        return completed

    async def restore_round(self, kill: KillAt | None, *, delete: bool = False) -> None:
        """A restore over a target holding another backup's tree; with `delete` (restore
        --delete), extra files and directories in the target too and an automatic checkpoint,
        then, after the kill, the same restore run again by the CLI, which must leave exactly
        the backup's tree."""
        if not self.expected:
            await self.create_round(None)
            return
        ids = sorted(self.expected)
        backup_id = self.rng.choice(ids)
        old_id = self.rng.choice(ids)
        target = self.scratch / f"target-{self.round_no}"
        materialize(self.expected[old_id], target)
        if delete:
            self._add_extras(target)
        old = snapshot(target)  # as it is on disk (directory modes included)
        new = self.expected[backup_id]
        before = {m.id for m in await self._fresh().list(PROJECT)}
        checkpoint = True if delete else self.rng.random() < 0.5
        cmd = {
            "op": "restore",
            "root": str(self.root),
            "project": PROJECT,
            "backup_id": backup_id,
            "restore_dir": str(target),
            "overwrite": self.rng.choice(["always", "if-changed"]),
            "checkpoint": checkpoint,
            "delete": delete,
        }
        kind = "restore-delete" if delete else "restore"
        meta_file = project_dir(self.root) / f"backup_{backup_id}" / "metadata.json"
        count = len(list(project_dir(self.root).glob("backup_*")))

        def marker() -> bool:  # RESTORING, or the checkpoint of the target started
            with contextlib.suppress(OSError):
                if b'"restoring"' in meta_file.read_bytes():
                    return True
            return len(list(project_dir(self.root).glob("backup_*"))) > count

        if delete:
            line, rest, delay = self._kill_at_step(cmd, kind, kill, marker)
        else:
            line, rest, delay = self._kill_after(cmd, kind, kill, marker)
        self._check_driver(line, rest)
        # whole files only: each one is the old content or the backup's, never a torn one
        temps = restore_temp_files(target)
        self.stats.restore_temp_left += len(temps)
        got = snapshot(target)
        for rel, entry in got.items():
            if os.path.basename(rel).startswith(RESTORE_TMP.encode()):
                continue
            choices = [s[rel] for s in (old, new) if rel in s]
            if entry[0] == "f":
                ok = any(c[0] == "f" and c[1] == entry[1] for c in choices)
            elif entry[0] == "l":
                ok = entry in choices
            else:
                ok = any(c[0] == "d" for c in choices)
            if not ok:
                self.stats.lost.append(
                    f"seed {self.seed}: torn/foreign {rel!r} after killed restore"
                )
            assert ok, f"seed {self.seed}: {rel!r} in the target is neither old nor restored"
        if delete:
            await self._rerun_restore(backup_id, target, new)
        mgr = self._fresh()
        metas = {m.id: m for m in await mgr.list(PROJECT)}
        assert metas[backup_id].status == BackupStatus.COMPLETED, metas[backup_id].status
        where = "finished" if line == "DONE" else "interrupted"
        for m in metas.values():
            if m.id in before:
                continue
            # a checkpoint of the target taken before the restore changed it
            assert m.tags.get("reason") == "pre-restore", m.tags
            if m.status == BackupStatus.COMPLETED:
                self.expected[m.id] = old
            else:
                assert "interrupted" in (m.error_message or ""), m.error_message
                where = "in-checkpoint"
        self._count(kind, delay, where)
        shutil.rmtree(target, ignore_errors=True)
        await self._verify_all(mgr)

    async def delete_round(
        self, kill: KillAt | None, backup_id: str | None = None, kind: str = "delete"
    ) -> tuple[str, str]:
        """Delete `backup_id` (else a random completed one); afterwards it is either still
        listed COMPLETED (and restores, as every other one) or gone. Returns the driver's
        result line. Other kinds than "delete" run a CLI command (recovery) before checking."""
        if backup_id is None:
            if len(self.expected) < 2:
                await self.create_round(None)
                return "SKIPPED", ""
            backup_id = self.rng.choice(sorted(self.expected))
        cmd = {"op": "delete", "root": str(self.root), "project": PROJECT, "backup_id": backup_id}
        meta_file = project_dir(self.root) / f"backup_{backup_id}" / "metadata.json"

        def gone() -> bool:
            return not meta_file.exists()

        if kind == "delete":
            line, rest, delay = self._kill_after(cmd, kind, kill, gone)
        else:
            line, rest, delay = self._kill_at_step(cmd, kind, kill, gone)
        self._check_driver(line, rest)
        if kind != "delete":
            await self._recover(["list", PROJECT])
        mgr = self._fresh()
        metas = {m.id: m for m in await mgr.list(PROJECT)}
        if backup_id in metas:
            where = "before-delete"
            assert metas[backup_id].status == BackupStatus.COMPLETED
        else:
            where = "deleted" if line != "DONE" else "finished"
            del self.expected[backup_id]
        self._count(kind, delay, where)
        await self._verify_all(mgr)
        return line, rest

    async def forget_round(self, kill: KillAt | None) -> None:
        """`forget --keep-last N` with a grace of 0 (removed backups deleted and their space
        reclaimed in the same run) or of 24 h (removed backups only marked), killed: every
        backup the rule keeps is still listed and restores; every other one is either still
        listed COMPLETED, or (grace 0) gone, or (grace 24 h) listed as removed and still
        restorable: never half."""
        if len(self.expected) < 3:
            await self.create_round(None)
            return
        mgr = self._fresh()
        metas = [m for m in await mgr.list(PROJECT) if m.status == BackupStatus.COMPLETED]
        done = [m.id for m in metas if m.type != BackupType.CHECKPOINT]  # newest first
        if len(done) < 2:
            await self.create_round(None)
            return
        keep_last = self.rng.randint(1, len(done) - 1)
        grace = self.rng.choice([0, 24])
        # keep-last N keeps the N newest completed backups; checkpoints (taken before a
        # restore) have no rule here, so every one is kept
        kept = set(done[:keep_last]) | {m.id for m in metas if m.type == BackupType.CHECKPOINT}
        cmd = {
            "op": "forget",
            "root": str(self.root),
            "project": PROJECT,
            "keep_last": keep_last,
            "grace_hours": grace,
        }
        count = len(list(project_dir(self.root).glob("backup_*")))

        def marker() -> bool:  # a removed backup's directory is gone (grace 0)
            return len(list(project_dir(self.root).glob("backup_*"))) < count

        line, rest, delay = self._kill_after(cmd, "forget", kill, marker if not grace else None)
        self._check_driver(line, rest)
        mgr = self._fresh()
        now = {m.id: m for m in await mgr.list(PROJECT)}
        removed = {m.id for m in await mgr.removed(PROJECT)}
        for backup_id in kept:
            assert backup_id in now, f"seed {self.seed}: kept backup {backup_id} not listed"
            assert now[backup_id].status == BackupStatus.COMPLETED, f"{backup_id}: {now[backup_id]}"
        where = "finished" if line == "DONE" else "before-forget"
        for backup_id in sorted(set(self.expected) - kept):
            if backup_id in now:
                assert now[backup_id].status == BackupStatus.COMPLETED, f"{now[backup_id]}"
                continue
            if grace:
                assert backup_id in removed, (
                    f"seed {self.seed}: {backup_id} neither listed nor removed"
                )
                target = self.scratch / f"removed-{backup_id}"
                await restore_to(mgr, backup_id, target)  # removed, and still restorable
                problems = diff_trees(self.expected[backup_id], snapshot(target))
                shutil.rmtree(target)
                assert not problems, f"seed {self.seed}: removed {backup_id}: {problems}"
                if self.rng.random() < 0.5:  # brought back: it is listed and restores again
                    await mgr.undelete(PROJECT, backup_id)
                    continue
            else:
                assert backup_id not in removed, f"seed {self.seed}: {backup_id} half deleted"
            where = "deleted" if line != "DONE" else "finished"
            del self.expected[backup_id]
        self._count("forget", delay, where)
        await self._verify_all(mgr)

    async def delete_rewrite_round(self, kill: KillAt | None) -> None:
        """A delete whose reclaim must rewrite packs: backup A stores new files, backup B
        keeps every other one and replaces the rest, so A's packs hold chunks B still needs
        next to chunks only A had; A is then deleted (and killed)."""
        shared = self.src / "rewrite"
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir()
        names = [shared / f"r{i}.dat" for i in range(8)]  # not *.bin: mutate_source skips them
        for path in names:
            path.write_bytes(random_bytes(self.rng, self.rng.randrange(20_000, 40_000)))
        a_id = await self.create_round(None, verify=False)
        for path in names[1::2]:
            path.write_bytes(random_bytes(self.rng, self.rng.randrange(20_000, 40_000)))
        await self.create_round(None, verify=False)
        assert a_id is not None, f"seed {self.seed}: the unkilled create did not complete"
        rewrite = packs_to_rewrite(self.root, a_id)
        self.stats.rewrites["rewrites" if rewrite else "none"] += 1
        assert rewrite, f"seed {self.seed}: deleting {a_id} would rewrite no pack"
        line, rest = await self.delete_round(kill, a_id, "delete-rewrite")
        if line == "DONE":  # an unkilled (calibration) round: the reclaim did rewrite
            assert json.loads(rest)["packs_rewritten"] >= 1, rest

    async def rebuild_round(self, kill: KillAt | None) -> None:
        """rebuild-index after a create (so that there are index files to merge), killed;
        then a CLI command, and every completed backup must restore."""
        await self.create_round(None, verify=False)
        index_dir = project_dir(self.root) / "index"

        def names() -> set[str]:
            return {
                p.name
                for p in index_dir.rglob("*")
                if p.is_file() and not p.name.startswith(STORE_TMP)
            }

        before = names()
        cmd = {"op": "rebuild-index", "root": str(self.root), "project": PROJECT}
        line, rest, delay = self._kill_at_step(
            cmd, "rebuild-index", kill, lambda: names() != before
        )
        self._check_driver(line, rest)
        after = names()
        if line == "DONE":
            where = "finished"
        elif after == before:
            where = "before-rebuild"
        elif after & before:
            where = "interrupted"  # the new index written, some old ones not yet removed
        else:
            where = "rebuilt"
        await self._recover(["list", PROJECT])
        self._count("rebuild-index", delay, where)
        await self._verify_all(self._fresh())

    async def trim(self) -> None:
        """An unkilled delete of a random completed backup, without the checks of a round."""
        backup_id = self.rng.choice(sorted(self.expected))
        d = self.pool.get()
        d.send({"op": "delete", "root": str(self.root), "project": PROJECT, "backup_id": backup_id})
        self._check_driver(*d.finish(timeout=120))
        del self.expected[backup_id]

    # -- recovery after a kill --

    def _add_extras(self, target: Path) -> None:
        """Files, a directory tree and a symlink no backup holds, for restore --delete (named
        after the round: the tree may come from a checkpoint holding earlier rounds' extras)."""
        n = self.round_no
        below = sorted(p for p in target.rglob("*") if p.is_dir() and not p.is_symlink())
        dirs = [target, *below]
        for i in range(self.rng.randint(2, 5)):
            where = self.rng.choice(dirs)
            (where / f"extra-{n}-{i}.bin").write_bytes(
                random_bytes(self.rng, self.rng.randrange(0, 30_000))
            )
        deep = target / f"extra-dir-{n}" / "deeper"
        deep.mkdir(parents=True)
        (deep / "x.bin").write_bytes(random_bytes(self.rng, self.rng.randrange(1, 20_000)))
        os.symlink(f"extra-dir-{n}/deeper/x.bin", target / f"extra-link-{n}")

    async def _recover(self, argv: list[str]) -> str:
        """A following `nexus-backup` command (in this process, as a fresh start would run
        it): it must succeed with no traceback; returns its stdout."""
        code, out, err = await asyncio.to_thread(cli_inproc, ["--root", str(self.root), *argv])
        assert code in (0, 3) and nexus_error_line(err), (
            f"seed {self.seed}: recovery `{' '.join(argv)}` exited {code}: {err[-500:]}"
        )
        self.stats.recoveries += 1
        return out

    async def _rerun_restore(self, backup_id: str, target: Path, want: Snapshot) -> None:
        """The killed restore --delete run again by the CLI: the target is then exactly the
        backup's tree (the extras gone, the killed run's temp files removed)."""
        argv = ["restore", PROJECT, backup_id, str(target), "--overwrite", "always"]
        await self._recover([*argv, "--delete", "--no-checkpoint"])
        got = snapshot(target)
        problems = diff_trees(want, got)
        if problems:
            self.stats.lost.append(f"seed {self.seed}: rerun restore --delete: {problems}")
        assert not problems, f"seed {self.seed}: restore --delete run again: {problems}"

    # -- checks after each round --

    def _check_driver(self, line: str, rest: str) -> None:
        assert line not in ("CRASH", "HUNG", "EXIT"), f"seed {self.seed}: driver {line}: {rest}"
        assert line != "ERROR", f"seed {self.seed}: the operation failed: {rest}"
        if line == "DONE" and rest.startswith('{"exit"'):
            code = json.loads(rest)["exit"]
            assert code in (0, 3), f"seed {self.seed}: nexus-backup exited {code}"

    def _count(self, kind: str, delay: float, where: str) -> None:
        self.stats.rounds += 1
        if delay:  # the time from the command to the kill; 0.0 for an unkilled round
            self.stats.faults[f"sigkill-{kind}"] += 1
            self.stats.landed[f"{kind}:{where}"] += 1
        self._note(f"{kind} killed after {delay:.3f}s: {where}")

    async def _verify_all(self, mgr: BackupManager) -> None:
        context = f"seed {self.seed} round {self.round_no}"
        try:
            # the check reads and hashes every chunk of every backup (a verify of each)
            await assert_repo_clean(mgr, self.root, context=context)
            await assert_all_restore(
                mgr, self.expected, self.scratch, context=context, verify=False
            )
        except AssertionError as exc:
            self.stats.lost.append(str(exc))
            raise
        self.stats.verified += len(self.expected)

    def _exec_kill(
        self, argv: list[str], kind: str, kill: KillAt | None, marker: Callable[[], bool]
    ) -> tuple[str, str, float]:
        """The real `nexus-backup` program, started cold and killed (startup included)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=driver_env(),
            cwd=str(REPO_DIR),
        )
        started = time.monotonic()

        def exited(timeout: float) -> bool:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True

        elapsed = 0.0
        if kill is None:
            self._calibrate(kind, started, exited, marker)
        else:
            self._wait_kill_point(kill, exited, marker)
            elapsed = time.monotonic() - started
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=120)
        text = err.decode(errors="replace")
        assert "Traceback" not in text, text
        if proc.returncode == -signal.SIGKILL:
            return "KILLED", "", elapsed
        assert proc.returncode in (0, 3), f"nexus-backup exited {proc.returncode}: {text}"
        return "DONE", "", elapsed

    async def step(self, op: str, *, calibrate: bool = False) -> None:
        """One round of `op` (create, restore, delete, cli-create, exec-create,
        restore-delete, delete-rewrite, rebuild-index, forget)."""
        self.round_no += 1
        kill = None if calibrate else self._delay(op)
        if op == "create":
            await self.create_round(kill)
        elif op == "restore":
            await self.restore_round(kill)
        elif op == "delete":
            await self.delete_round(kill)
        elif op == "restore-delete":
            await self.restore_round(kill, delete=True)
        elif op == "delete-rewrite":
            await self.delete_rewrite_round(kill)
        elif op == "forget":
            await self.forget_round(kill)
        elif op == "rebuild-index":
            await self.rebuild_round(kill)
        elif op == "cli-create":
            await self.create_round(kill, cli="warm")
        elif op == "exec-create":
            await self.create_round(kill, cli="exec")
        else:
            raise ValueError(op)


MAX_KEPT = 3
#: Operations whose rounds add backups of their own (creates before the killed step): the
#: campaign trims them back with unchecked deletes (the killed round checks everything).
GROWING = frozenset({"delete-rewrite", "rebuild-index"})
#: Operations that remove backups: the campaign makes sure there are some to remove.
SHRINKING = frozenset({"delete", "forget"})

#: Failure signatures of core defects that a random kill can reach and that have their own
#: deterministic xfail test; remove an entry once its fix has landed.
KNOWN_DEFECTS: dict[str, str] = {}


def known_defect(message: str) -> str | None:
    return next((why for sig, why in KNOWN_DEFECTS.items() if sig in message), None)


def kill_schedule(rng: random.Random, ops: list[str], rounds: int) -> Iterator[str]:
    for _ in range(rounds):
        yield rng.choice(ops)


async def run_campaign(
    base: Path,
    seed: int,
    ops: list[str],
    rounds: int,
    stats: KillStats,
    *,
    pool: DriverPool | None = None,
    progress: Callable[[str], None] | None = None,
    calibration: int = 2,
) -> KillCampaign:
    """A campaign: `calibration` timed (unkilled) rounds of each op, then `rounds` killed
    rounds."""
    own = pool is None
    pool = pool or DriverPool()
    try:
        camp = KillCampaign(base, seed, pool, stats)
        for _ in range(2):
            await camp.step("create", calibrate=True)
        for op in dict.fromkeys(ops):  # timed runs of each operation
            for _ in range(calibration):
                while op in SHRINKING and len(camp.expected) < 3:
                    await camp.step("create", calibrate=True)
                await camp.step(op, calibrate=True)
        rng = random.Random(seed * 7 + 1)
        for op in kill_schedule(rng, ops, rounds):
            # unkilled rounds keep 3..MAX_KEPT completed backups around
            while op in SHRINKING and len(camp.expected) < 3:
                await camp.step("create", calibrate=True)
            while op not in SHRINKING and len(camp.expected) > MAX_KEPT:
                if op in GROWING:
                    await camp.trim()
                else:
                    await camp.step("delete", calibrate=True)
            await camp.step(op)
            if progress is not None:
                progress(camp.stats.log[-1] if camp.stats.log else op)
        return camp
    finally:
        if own:
            pool.close()


# --------------------------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------------------------


def tree_state(top: Path, *, files_only: bool = False) -> dict[bytes, tuple]:
    """Everything about a tree a write outside the allowed place would change (with
    `files_only`, its files and symlinks: an empty directory left behind does not count)."""
    out: dict[bytes, tuple] = {}
    base = os.fsencode(top)
    if not os.path.isdir(base):
        return out
    for dirpath, dirs, files in os.walk(base):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if files_only and stat.S_ISDIR(st.st_mode):
                continue
            content = b""
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    content = f.read()
            out[os.path.relpath(full, base)] = (st.st_mode, st.st_mtime_ns, st.st_size, content)
    return out


def cli_process(root: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """`nexus-backup --root ROOT ARGS` in a process of its own (`kw`: preexec_fn and the
    like for subprocess.run), as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=driver_env(),
        cwd=str(REPO_DIR),
        timeout=120,
        **kw,
    )


def cli_inproc(argv: list[str]) -> tuple[int, str, str]:
    """`nexus-backup argv` run in this process (cli.main.main): (exit code, stdout, stderr).
    Call it from a thread when an event loop runs (main() uses asyncio.run)."""
    import io

    import cli.main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main.main(argv)
    return code, out.getvalue(), err.getvalue()


def nexus_error_line(text: str) -> bool:
    """True when stderr is nothing but one-line `nexus-backup: error: ...` messages."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return all(ln.startswith("nexus-backup: ") for ln in lines) and "Traceback" not in text


__all__ = [
    "PROJECT",
    "BackupStatus",
    "CreateRequest",
    "DriverPool",
    "KillCampaign",
    "KillStats",
    "NexusError",
    "RestoreRequest",
    "mf",
    "run_campaign",
]


def regular_files(top: Path) -> dict[str, bytes]:
    """Every regular file under `top` (not following symlinks), by relative path."""
    out: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(top):
        for n in names:
            full = Path(dirpath) / n
            if full.is_file() and not full.is_symlink():
                out[str(full.relative_to(top))] = full.read_bytes()
    return out


@contextlib.contextmanager
def bind_mount(source: Path, where: Path) -> Iterator[None]:
    """`source` bind-mounted at `where` (the test skipped where mounting is not permitted)."""
    import pytest

    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "--bind", str(source), str(where)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {r.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
