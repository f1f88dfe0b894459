"""Concurrency: several processes creating backups of one project at once while another lists
(and reads each backup's info) and a third deletes. Every process must end within a bound (no
deadlock); Busy is an acceptable, clean outcome for the deleter; afterwards no lock is left,
every completed backup that was not deleted restores byte for byte, and a full check passes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import rel_harness as h

from core.manager import BackupManager
from core.models import BackupStatus
from core.storage.local import atomic_write

LOOP = r"""
import asyncio, json, os, random, sys, time
sys.path.insert(0, os.environ["NEXUS_REL_REPO"])
from core.manager import BackupManager
from core.models import CreateRequest
from core.errors import NexusError, NotFound, Busy

role, root, project, arg, seed = sys.argv[1:6]
rng = random.Random(int(seed))
stop = os.path.join(root, "..", "STOP")

def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()

async def main():
    mgr = BackupManager(root)
    if role == "create":
        for _ in range(4):
            try:
                req = CreateRequest(project_id=project, data_dir=arg, data_dir_change=True)
                meta = await mgr.create(req)
                say(ok=meta.id, source=arg, warnings=meta.stats.warnings)
            except NexusError as exc:
                say(error=type(exc).__name__, message=str(exc))
    elif role == "list":
        n = 0
        while not os.path.exists(stop):
            try:
                for m in await mgr.list(project):
                    try:
                        await mgr.info(project, m.id)
                    except NotFound:
                        pass  # deleted meanwhile
                n += 1
            except NotFound:
                pass  # the project's first backup is not there yet
            except NexusError as exc:
                say(error=type(exc).__name__, message=str(exc))
            await asyncio.sleep(0.01)
        say(lists=n)
    elif role == "delete":
        deleted = 0
        while not os.path.exists(stop) and deleted < int(arg):
            try:
                done = [m for m in await mgr.list(project) if m.status.value == "completed"]
                if len(done) >= 2:
                    victim = rng.choice(done)
                    await mgr.delete(project, victim.id)
                    say(deleted=victim.id)
                    deleted += 1
            except (Busy, NotFound) as exc:
                say(busy=type(exc).__name__, message=str(exc))
            except NexusError as exc:
                say(error=type(exc).__name__, message=str(exc))
            await asyncio.sleep(rng.uniform(0.0, 0.1))

asyncio.run(main())
"""


async def test_creators_lister_and_deleter_at_once(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    root = tmp_path / "repo"
    h.init_project(root)
    sources = []
    shared = rng.randbytes(120_000)  # the same file in every source: dedup races
    for i in range(3):
        src = tmp_path / f"src{i}"
        h.build_source(random.Random(seed + i), src, files=25)
        (src / "shared.bin").write_bytes(shared)
        sources.append(src)
    want = {str(s): h.snapshot(s) for s in sources}
    # two backups exist before the race starts, so the deleter has work from the first instant
    early = {}
    for src in sources[:2]:
        meta = await BackupManager(root).create(
            h.CreateRequest(project_id=h.PROJECT, data_dir=str(src), data_dir_change=True)
        )
        early[meta.id] = str(src)

    def spawn(role: str, arg: str, n: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", LOOP, role, str(root), h.PROJECT, arg, str(seed + n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=h.driver_env(),
            text=True,
        )

    creators = [spawn("create", str(sources[i % 3]), i) for i in range(4)]
    lister = spawn("list", "-", 10)
    deleter = spawn("delete", "4", 11)
    results: dict[str, list[dict]] = {}
    deadline = time.monotonic() + 120
    for name, proc in [(f"create{i}", p) for i, p in enumerate(creators)]:
        out, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        assert proc.returncode == 0 and "Traceback" not in err, (name, err[-2000:])
        results[name] = [json.loads(line) for line in out.splitlines()]
    (tmp_path / "STOP").write_text("")
    for name, proc in (("list", lister), ("delete", deleter)):
        out, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        assert proc.returncode == 0 and "Traceback" not in err, (name, err[-2000:])
        results[name] = [json.loads(line) for line in out.splitlines()]
    busy = sum(1 for r in results["delete"] if "busy" in r)
    print(
        f"[reliability] concurrency seed {seed}: creates "
        f"{sum(1 for k, rs in results.items() if k.startswith('create') for r in rs if 'ok' in r)}"
        f", deletes {sum(1 for r in results['delete'] if 'deleted' in r)} (busy {busy}), "
        f"lists {results['list'][-1].get('lists')}"
    )

    # nothing failed but with a clean Busy, nothing is left locked (before any recovery runs)
    errors = [(k, r) for k, rs in results.items() for r in rs if "error" in r]
    assert not errors, errors
    assert not h.lock_files(root), h.lock_files(root)
    created = dict(early)
    created |= {
        r["ok"]: r["source"]
        for k, rs in results.items()
        if k.startswith("create")
        for r in rs
        if "ok" in r
    }
    deleted = {r["deleted"] for r in results["delete"] if "deleted" in r}
    assert len(created) >= 12, results  # most creates went through despite the deleter
    assert results["list"][-1]["lists"] > 0

    mgr = BackupManager(root)
    metas = {m.id: m for m in await mgr.list(h.PROJECT)}
    assert set(metas) == set(created) - deleted, set(metas) ^ (set(created) - deleted)
    assert all(m.status == BackupStatus.COMPLETED for m in metas.values())
    expected = {bid: want[src] for bid, src in created.items() if bid not in deleted}
    await h.assert_repo_clean(mgr, root)
    await h.assert_all_restore(mgr, expected, tmp_path / "scratch", verify=False)


async def test_cancelled_create_does_not_delete_packs_a_concurrent_backup_indexed(tmp_path: Path):
    """B backs up f plus a huge sparse file (slow); meanwhile A backs up the same f and
    completes (A did not see B's chunks, B has no index yet, so both store f's chunks). With
    `pack_size` 1 every chunk is a pack of its own, so A's and B's packs of f are byte for
    byte the same objects; with the default 16 MiB packs the same happens whenever two runs
    pack the same chunks in the same order (two backups of a small project). Then B is
    cancelled (Ctrl-C, an API cancel) and cleans up "its" packs."""
    root = tmp_path / "repo"
    h.init_project(root)
    cfg = h.project_dir(root) / "config.json"
    config = json.loads(cfg.read_bytes())
    config["pack_size"] = 1
    atomic_write(cfg, json.dumps(config).encode())
    content = os.urandom(50_000)
    a_src, b_src = tmp_path / "a", tmp_path / "b"
    for d in (a_src, b_src):
        d.mkdir()
        (d / "f").write_bytes(content)
    with open(b_src / "sparse", "wb") as f:
        f.truncate(64 << 30)  # reading 64 GiB of zeros takes far longer than A
    packs = h.project_dir(root) / "packs"
    b_task = asyncio.create_task(
        BackupManager(root).create(
            h.CreateRequest(project_id=h.PROJECT, data_dir=str(b_src), data_dir_change=True)
        )
    )
    try:
        deadline = time.monotonic() + 30
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:  # until B's packs of f are stored
            n = len(list(packs.glob("*/*"))) if packs.exists() else 0
            if n != last:
                last, stable_since = n, time.monotonic()
            elif n >= 2 and time.monotonic() - stable_since > 0.3:
                break
            await asyncio.sleep(0.01)
        a = await BackupManager(root).create(
            h.CreateRequest(project_id=h.PROJECT, data_dir=str(a_src), data_dir_change=True)
        )
        assert not b_task.done(), "B finished too early for the race"
    finally:
        b_task.cancel()
        with contextlib.suppress(BaseException):
            await b_task
    mgr = BackupManager(root)
    v = await mgr.verify(h.PROJECT, a.id)
    assert v.ok, f"A lost data when B was cancelled: {v.damaged_files}"
    await h.assert_all_restore(mgr, {a.id: h.snapshot(a_src)}, tmp_path / "scratch")
