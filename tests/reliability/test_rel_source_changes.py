"""The source changing under the backup: files rewritten in place, grown, truncated, replaced
(atomically, by a symlink), deleted and re-created, directories renamed, all by another
process in a tight loop while backups run.

Every version of every file is one recognisable whole (`<tag|vN|sSIZE>` repeated to SIZE
bytes), so a torn mix of two versions, or a prefix of one, is detected. Each backup must
complete, and every file it records must restore to one whole version (or be empty: an
O_TRUNC that was followed by the write later is a state the file really had) or else be named
in stats.warnings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import rel_harness as h

from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest

MUTATOR = r"""
import json, os, random, sys, time
top, seed, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)

def versioned(tag, v, size):
    unit = b"<%s|v%08d|s%010d>" % (tag.encode(), v, size)
    return (unit * (size // len(unit) + 1))[:size]

# no version shorter than one unit: its header cut, it could not be told from a torn read
MIN = 64

def find(tag):
    for d in ("d0", "d1", "d2", "d2x"):
        p = os.path.join(top, d, tag)
        if os.path.lexists(p):
            return p
    return None

tags = [f"t{i:02}" for i in range(24)]
version = 1000
counts = {}
while not os.path.exists(stop):
    op = rng.choice(["rewrite", "rewrite", "grow", "shrink", "replace", "delete", "symlink",
                     "rename-dir"])
    version += 1
    tag = rng.choice(tags)
    p = find(tag)
    try:
        if op == "rename-dir":
            a, b = os.path.join(top, "d2"), os.path.join(top, "d2x")
            if os.path.exists(a):
                os.rename(a, b)
            elif os.path.exists(b):
                os.rename(b, a)
        elif p is None or os.path.islink(p):
            # (re)create as a regular file, atomically
            d = os.path.join(top, "d%d" % rng.randrange(2))
            tmp = os.path.join(d, ".new-" + tag)
            with open(tmp, "wb") as f:
                f.write(versioned(tag, version, rng.randrange(MIN, 150_000)))
            os.replace(tmp, os.path.join(d, tag))
            if p is not None and os.path.dirname(p) != d:
                os.unlink(p)
            op = "create"
        elif op in ("rewrite", "grow"):
            size = os.path.getsize(p)
            if op == "grow":
                size += rng.randrange(1, 80_000)
            fd = os.open(p, os.O_WRONLY)
            os.pwrite(fd, versioned(tag, version, max(size, MIN)), 0)
            os.close(fd)
        elif op == "shrink":
            size = os.path.getsize(p)
            with open(p, "wb") as f:  # O_TRUNC, then one write
                f.write(versioned(tag, version, max(MIN, size // 3)))
        elif op == "replace":
            tmp = p + ".tmp"
            with open(tmp, "wb") as f:
                f.write(versioned(tag, version, rng.randrange(MIN, 150_000)))
            os.replace(tmp, p)
        elif op == "delete":
            os.unlink(p)
        elif op == "symlink":
            tmp = p + ".lnk"
            os.symlink(rng.choice(tags), tmp)
            os.replace(tmp, p)
        counts[op] = counts.get(op, 0) + 1
    except FileNotFoundError:
        counts["raced"] = counts.get("raced", 0) + 1
    time.sleep(rng.uniform(0, 0.002))
print(json.dumps(counts))
"""


def _build(top: Path) -> None:
    for d in ("d0", "d1", "d2"):
        (top / d).mkdir(parents=True)
    for i in range(24):
        tag = f"t{i:02}"
        (top / f"d{i % 3}" / tag).write_bytes(h.versioned(tag, i, 1000 + i * 5000))


async def test_files_changing_while_backed_up(tmp_path: Path, seed: int):
    root = tmp_path / "repo"
    h.init_project(root)
    top = tmp_path / "live"
    _build(top)
    stop = tmp_path / "STOP"
    mutator = subprocess.Popen(
        [sys.executable, "-c", MUTATOR, str(top), str(seed), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    mgr = BackupManager(root)
    metas = []
    try:
        time.sleep(0.05)
        for i in range(6):
            btype = "full" if i % 2 == 0 else "incremental"
            metas.append(
                await mgr.create(
                    CreateRequest(project_id=h.PROJECT, data_dir=str(top), backup_type=btype)
                )
            )
    finally:
        stop.write_text("")
        out, err = mutator.communicate(timeout=30)
    assert mutator.returncode == 0, err
    counts = json.loads(out)
    assert sum(counts.values()) > 50, counts

    recorded = skipped = 0
    for meta in metas:
        assert meta.status == BackupStatus.COMPLETED
        warned = " ".join(meta.stats.warnings)
        target = tmp_path / "out"
        shutil.rmtree(target, ignore_errors=True)
        await h.restore_to(mgr, meta.id, target)
        for rel, entry in h.snapshot(target).items():
            if entry[0] != "f":
                continue
            name = os.path.basename(rel).decode()
            if not name.startswith("t"):
                continue
            recorded += 1
            if entry[1] == b"":
                continue
            got = h.whole_version(entry[1])
            # `replace` writes tNN.tmp whole before renaming it over tNN: a backup that lists
            # the directory in between records that file, holding tNN's next version
            tag = name.removesuffix(".tmp")
            assert got is not None and got[0] == tag, (
                f"seed {seed}: backup {meta.id} recorded a torn {rel!r} "
                f"({len(entry[1])} bytes, starts {entry[1][:40]!r}) without a warning "
                f"({warned[:300]})"
            )
        skipped += len(meta.stats.warnings)
    print(
        f"[reliability] seed {seed}: mutations {counts}; files recorded {recorded}, "
        f"warnings {skipped}"
    )
    assert recorded > 0
    result = await mgr.check(h.PROJECT, read_data=True)
    assert result.ok, result.errors


async def test_a_symlink_swapped_for_a_file_and_back_is_said_so(tmp_path: Path) -> None:
    """Another thread swaps `x` between a symlink and a regular file (each by an atomic
    rename) while backups run: each backup records one of the two whole, or leaves x out
    saying it was replaced, never with a bare errno ("Invalid argument")."""
    root = tmp_path / "repo"
    h.init_project(root)
    top = tmp_path / "live"
    top.mkdir()
    (top / "keep.txt").write_text("kept")
    stop = threading.Event()

    def swap() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tmp = top / f".x{n}"
            if n % 2:
                os.symlink("keep.txt", tmp)
            else:
                tmp.write_bytes(b"a regular file")
            os.replace(tmp, top / "x")

    mgr = BackupManager(root)
    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        metas = [
            await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(top)))
            for _ in range(25)
        ]
    finally:
        stop.set()
        swapper.join()
    for meta in metas:
        assert meta.status == BackupStatus.COMPLETED
        for w in meta.stats.warnings:
            assert "Invalid argument" not in w and "Errno" not in w, w
        target = tmp_path / f"out-{meta.id}"
        await h.restore_to(mgr, meta.id, target)
        x = target / "x"
        if x.is_symlink():
            assert os.readlink(x) == "keep.txt"
        elif x.exists():
            assert x.read_bytes() == b"a regular file"
