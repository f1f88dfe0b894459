"""Two backups at once in one engine (the TUI and the API run several), on a slow disk: each
reads its files while the other does, and both store every byte. Each run limits how many of
its own batches of small files read at once (`RunState.small_batches`); a limit shared by the
process let one backup's small files hold the other's back until it ended."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import core.ops.backup
from core.manager import BackupManager
from core.models import CreateRequest, ProgressEvent, RestoreRequest


def _tree(top: Path, files: int, seed: int) -> None:
    """Small files only: every one is read in a batch of small files."""
    for i in range(files):
        d = top / f"d{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(b"%d %d\n" % (seed, i) * (1 + i % 60))


async def test_two_backups_of_many_small_files_read_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read = core.ops.backup.read_file

    def slow_read(state, item):  # type: ignore[no-untyped-def]
        time.sleep(0.02)  # a slow disk: the real engine, each file's read delayed
        return real_read(state, item)

    monkeypatch.setattr(core.ops.backup, "read_file", slow_read)
    mgr = BackupManager(tmp_path / "root")
    sources = {p: tmp_path / p for p in ("alpha", "beta")}
    for i, top in enumerate(sources.values()):
        _tree(top, 128, i)  # two batches of small files each
    reading: dict[str, list[float]] = {p: [] for p in sources}

    def seen(event: ProgressEvent) -> None:
        if event.phase == "reading" and event.files_done:
            reading[event.project_id].append(time.monotonic())

    async def backup(p: str) -> None:
        await mgr.create(CreateRequest(project_id=p, data_dir=str(sources[p])), progress=seen)

    await asyncio.wait_for(asyncio.gather(*(backup(p) for p in sources)), timeout=120)
    for p, other in (("alpha", "beta"), ("beta", "alpha")):
        assert reading[p], f"{p} reported no files read"
        # the two read passes overlap: neither waits for the other's to end
        assert reading[p][0] < reading[other][-1], (p, reading)
    for p, top in sources.items():
        out = tmp_path / f"out-{p}"
        await mgr.restore(RestoreRequest(project_id=p, backup_id="latest", restore_dir=str(out)))
        for f in top.rglob("*"):
            if f.is_file():
                assert (out / f.relative_to(top)).read_bytes() == f.read_bytes()
