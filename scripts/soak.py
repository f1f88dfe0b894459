#!/usr/bin/env python3
"""Soak: the reliability suite's faults, for many rounds (tests/reliability/ holds the CI part).

    .venv/bin/python scripts/soak.py --minutes 5
    .venv/bin/python scripts/soak.py --rounds 500 --seed 42

Each cycle (a fresh repository each time, seeds derived from --seed) runs:
  - a kill campaign: real processes running create, restore, delete and forget (and their
    space reclaim),
    the CLI in a warm process and the `nexus-backup` program started cold, each SIGKILLed
    after a seeded random delay; and the destructive paths: restore --delete over a target
    with extra files (after its automatic checkpoint), a delete whose reclaim rewrites packs
    shared with a kept backup, and rebuild-index, killed after a random delay or right before
    a random one of their mutating system calls, then followed by a CLI command (the same
    restore again, `list`). After every kill a fresh BackupManager recovers, a full check
    with data reads must pass, and every COMPLETED backup must restore byte for byte (a
    killed restore --delete: every target file old or new, never torn; the checkpoint
    restores the target as it was; the restore run again leaves exactly the backup's tree);
  - the source changing under the backup (another process rewriting, growing, truncating,
    replacing, deleting files and renaming directories while backups run);
  - a corruption (a flipped byte in a pack, an index file or a manifest; a truncated or
    deleted pack) that verify must name exactly;
  - several processes creating at once while one lists and one deletes;
  - a backup onto a repository that runs out of space (a size-limited tmpfs when this
    process may mount one; else skipped, and said so).
It stops after --rounds kill rounds or --minutes minutes, whichever comes first, prints a
summary (rounds, faults injected by kind, backups verified, data lost) and exits 1 when any
data was lost (a COMPLETED backup that no longer restores or verifies, a torn file)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SUITE = REPO / "tests" / "reliability"
sys.path[:0] = [str(REPO), str(SUITE)]

import rel_harness as h  # noqa: E402
import test_rel_concurrency  # noqa: E402
import test_rel_corruption  # noqa: E402
import test_rel_source_changes  # noqa: E402

from core.errors import NexusError  # noqa: E402
from core.manager import BackupManager  # noqa: E402
from core.models import BackupStatus, CreateRequest  # noqa: E402

KILL_OPS = [
    "create",
    "create",
    "restore",
    "delete",
    "delete",
    "forget",
    "cli-create",
    "exec-create",
    # the destructive paths: each killed round is followed by a CLI command (recovery)
    "restore-delete",
    "delete-rewrite",
    "rebuild-index",
]
CORRUPTIONS = [
    "test_flipped_byte_in_a_pack",
    "test_truncated_pack",
    "test_deleted_pack",
    "test_flipped_byte_in_an_index_file_then_rebuild",
    "test_flipped_byte_in_a_manifest",
    "test_metadata_checksum_flipped",
]


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seed = args.seed
        self.deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
        self.stats = h.KillStats()
        self.faults: Counter[str] = Counter()
        self.verified = 0
        self.lost: list[str] = []
        self.defects: Counter[str] = Counter()  # known core defects seen (not data loss)
        self.notes: list[str] = []
        self.cycles = 0

    def time_left(self) -> bool:
        return self.deadline is None or time.monotonic() < self.deadline

    def kill_rounds(self) -> int:
        return sum(self.stats.faults.values())

    def done(self) -> bool:
        return not self.time_left() or self.kill_rounds() >= self.args.rounds

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(text, flush=True)

    async def guarded(self, kind: str, seed: int, coro) -> None:
        """Run one fault; an AssertionError is data loss, unless it is a known defect's
        signature (then counted as that defect)."""
        try:
            await coro
        except AssertionError as exc:
            msg = " ".join(str(exc).split())[:400]
            if not msg:  # an assert without a message: say where it is
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                msg = f"assert at {Path(frame.filename).name}:{frame.lineno}: {frame.line}"
            known = h.known_defect(msg)
            if known:
                self.defects[known] += 1
                self.lost.append(f"{kind} seed {seed}: KNOWN DEFECT {known}: {msg}")
            else:
                self.lost.append(f"{kind} seed {seed}: {msg}")
            self.say(f"  !! {kind} seed {seed}: {msg}")
        except Exception as exc:  # a crash of the harness or the engine
            self.lost.append(f"{kind} seed {seed}: {type(exc).__name__}: {exc}")
            self.say(f"  !! {kind} seed {seed} crashed:\n{traceback.format_exc()}")

    # --- the faults --------------------------------------------------------------------------

    async def kill_campaign(self, base: Path, seed: int, pool: h.DriverPool) -> None:
        rounds = min(self.args.campaign, self.args.rounds - self.kill_rounds())
        if rounds <= 0:
            return
        before = self.stats.verified
        ops = list(KILL_OPS)
        await h.run_campaign(base, seed, ops, rounds, self.stats, pool=pool, calibration=3)
        self.verified += self.stats.verified - before

    async def source_changes(self, base: Path, seed: int) -> None:
        base.mkdir()
        await test_rel_source_changes.test_files_changing_while_backed_up(base, seed)
        self.faults["source-changing"] += 1
        self.verified += 8

    async def corruption(self, base: Path, seed: int) -> None:
        rng = random.Random(seed)
        name = rng.choice(CORRUPTIONS)
        base.mkdir()
        repo = await test_rel_corruption.build_repo3(base, seed)
        test = getattr(test_rel_corruption, name)
        if name == "test_flipped_byte_in_a_manifest":
            await test(repo, rng.choice(["start", "middle", "end"]))
        else:
            await test(repo)
        self.faults[f"corruption-{name.removeprefix('test_')}"] += 1
        self.verified += len(repo.backups)

    async def concurrency(self, base: Path, seed: int) -> None:
        base.mkdir()
        await test_rel_concurrency.test_creators_lister_and_deleter_at_once(base, seed)
        self.faults["concurrent-create-list-delete"] += 1

    async def disk_full(self, base: Path, seed: int) -> None:
        """A repository on a small tmpfs: a backup too big for it must not COMPLETE unless
        everything it lists restores; earlier backups stay intact."""
        rng = random.Random(seed)
        base.mkdir()
        fs = base / "fs"
        fs.mkdir()
        size = rng.choice([2, 3, 4, 6])
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}m", "tmpfs", str(fs)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            if "disk-full" not in " ".join(self.notes):
                self.notes.append(f"disk-full skipped: cannot mount a tmpfs ({r.stderr.strip()})")
            return
        try:
            root = fs / "repo"
            h.init_project(root, small=rng.random() < 0.5)
            small = base / "small"
            small.mkdir()
            for i in range(4):
                (small / f"s{i}").write_bytes(rng.randbytes(20_000))
            mgr = BackupManager(root)
            first = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(small)))
            big = base / "big"
            big.mkdir()
            for i in range(rng.randrange(1, 12)):
                (big / f"b{i}").write_bytes(rng.randbytes(rng.randrange(200_000, 2_000_000)))
            self.faults["disk-full"] += 1
            try:
                meta = await BackupManager(root).create(
                    CreateRequest(project_id=h.PROJECT, data_dir=str(big), data_dir_change=True)
                )
            except NexusError as exc:
                if "no space" not in str(exc):
                    self.defects["disk full reported as something else: " + str(exc)[:60]] += 1
            else:
                if any("No space left" in w for w in meta.stats.warnings):
                    self.defects["disk-full backup COMPLETED with files skipped"] += 1
                # whatever it claims to hold must restore
                tree = {
                    k: v
                    for k, v in h.snapshot(big).items()
                    if not any(os.fsdecode(k) in w for w in meta.stats.warnings)
                }
                await h.assert_all_restore(BackupManager(root), {meta.id: tree}, base / "scratch")
                self.verified += 1
            want = {first.id: h.snapshot(small)}
            try:  # while the repository is still full
                await h.assert_all_restore(BackupManager(root), want, base / "scratch")
            except NexusError:
                self.defects["restore impossible while the repository is full"] += 1
            except OSError:
                self.defects["restore on a full repository raised a raw OSError"] += 1
            # with room again, every earlier backup must be intact
            subprocess.run(
                ["mount", "-o", "remount,size=64m", str(fs)], check=True, capture_output=True
            )
            mgr = BackupManager(root)
            metas = {m.id: m for m in await mgr.list(h.PROJECT)}
            assert metas[first.id].status == BackupStatus.COMPLETED
            await h.assert_all_restore(mgr, want, base / "scratch")
            assert not h.store_temp_files(root), "temp files left after a disk-full failure"
            result = await mgr.check(h.PROJECT, read_data=True)
            assert result.ok, f"check after disk full: {result.errors[:3]}"
            self.verified += 1
        finally:
            subprocess.run(["umount", "-l", str(fs)], capture_output=True)

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> int:
        workdir = Path(tempfile.mkdtemp(prefix="nexus-soak-", dir=self.args.base))
        self.say(
            f"soak: seed {self.seed}, up to {self.args.rounds} kill rounds"
            + (f" or {self.args.minutes} minutes" if self.args.minutes else "")
            + f", in {workdir}"
        )
        started = time.monotonic()
        pool = h.DriverPool()
        try:
            while not self.done():
                self.cycles += 1
                c = self.cycles
                cyc = random.Random(self.seed * 1_000_003 + c)
                cdir = workdir / f"cycle{c:04}"
                cdir.mkdir()
                lost_before = len(self.lost)
                s = cyc.randrange(1, 2**31)
                await self.guarded("kill", s, self.kill_campaign(cdir / "kill", s, pool))
                for kind, fn in (
                    ("source-changing", self.source_changes),
                    ("corruption", self.corruption),
                    ("disk-full", self.disk_full),
                    ("concurrency", self.concurrency),
                ):
                    if kind == "concurrency" and c % 2:
                        continue  # the slowest: every other cycle
                    if not self.time_left():
                        break
                    s = cyc.randrange(1, 2**31)
                    await self.guarded(kind, s, fn(cdir / kind, s))
                if not self.args.keep and len(self.lost) == lost_before:
                    shutil.rmtree(cdir, ignore_errors=True)
                self.say(
                    f"cycle {c}: {self.kill_rounds()} kill rounds, "
                    f"{int(time.monotonic() - started)} s, lost so far: {len(self.lost)}"
                )
        finally:
            pool.close()
            for mnt in workdir.rglob("fs"):  # a tmpfs left mounted by an interrupted cycle
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            if not self.args.keep and not self.lost:
                shutil.rmtree(workdir, ignore_errors=True)
        faults = Counter(self.stats.faults) + self.faults
        elapsed = time.monotonic() - started
        print()
        print("nexus-backup soak summary")
        print(f"  seed                {self.seed}")
        print(f"  duration            {elapsed / 60:.1f} min, {self.cycles} cycles")
        print(
            f"  rounds              {self.stats.rounds} kill-campaign rounds "
            f"({self.kill_rounds()} with a SIGKILL), plus {sum(self.faults.values())} others"
        )
        print(f"  faults injected     {sum(faults.values())}")
        for kind, n in sorted(faults.items()):
            print(f"    {kind:38} {n}")
        landed = dict(sorted(self.stats.landed.items()))
        print(f"  kills landed        {landed}")
        print(f"  backups verified    {self.verified} (restored byte for byte after a fault)")
        print(
            f"  recoveries          {self.stats.recoveries} CLI commands run after a kill; "
            f"kills at a mutating call {dict(self.stats.step_kills)}; "
            f"delete-rewrite rounds {dict(self.stats.rewrites)}"
        )
        print(
            f"  restore temp files  {self.stats.restore_temp_left} found right after a killed "
            "restore (the next restore into the target removes them)"
        )
        if self.defects:
            print("  known core defects hit:")
            for what, n in self.defects.items():
                print(f"    {n} x {what}")
        for note in self.notes:
            print(f"  note: {note}")
        print(f"  data lost           {len(self.lost) or 'none'}")
        for line in self.lost[:20]:
            print(f"    {line}")
        if self.lost and not self.args.keep:
            print(f"  (kept the repositories of the failing cycles under {workdir})")
        return 1 if self.lost else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10**9, help="stop after this many kill rounds")
    p.add_argument("--minutes", type=float, default=None, help="stop after this long")
    p.add_argument("--seed", type=int, default=None, help="(default: random, printed)")
    p.add_argument("--campaign", type=int, default=40, help="kill rounds per repository")
    p.add_argument("--base", default=None, help="where the temporary repositories go")
    p.add_argument("--keep", action="store_true", help="keep every cycle's files")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.minutes is None and args.rounds == 10**9:
        args.minutes = 5.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(Soak(args).run())
    return 130


if __name__ == "__main__":
    sys.exit(main())
