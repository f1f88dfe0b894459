"""Fixtures of the TUI tests: a real core on a temporary root, small real directories."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.manager import BackupManager
from core.models import BackupType, CreateRequest

FIXED_NOW = datetime(2026, 11, 29, 15, 0, 0, tzinfo=UTC)


@pytest.fixture
def tui_root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def tui_data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub" / "deep").mkdir(parents=True)
    (d / "a.txt").write_bytes(b"alpha version 1\n")
    (d / "sub" / "b.txt").write_bytes(b"bravo\n" * 100)
    (d / "sub" / "deep" / "c.bin").write_bytes(os.urandom(200 * 1024))
    return d


@pytest.fixture
async def seeded(tui_root: Path, tui_data: Path) -> dict:
    """Project `proj` with a full backup, then a.txt changed and an incremental one."""
    mgr = BackupManager(tui_root)
    await mgr.create_project("proj", str(tui_data))
    first = await mgr.create(
        CreateRequest(project_id="proj", data_dir=str(tui_data), tags={"env": "prod"})
    )
    original = (tui_data / "a.txt").read_bytes()
    (tui_data / "a.txt").write_bytes(b"alpha version 2, changed\n")
    second = await mgr.create(
        CreateRequest(project_id="proj", data_dir=str(tui_data), backup_type=BackupType.INCREMENTAL)
    )
    return {"first": first, "second": second, "original_a": original, "data": tui_data}


@pytest.fixture
def big_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory whose backup takes seconds: a slow disk, simulated by delaying each
    file read in the engine (the real engine, merely slowed), so a test can act on a
    backup while it runs (cancel it, start another operation, quit) without racing."""
    import core.ops.backup

    d = tmp_path / "big"
    d.mkdir()
    blob = os.urandom(2 * 1024 * 1024)
    for i in range(400):
        (d / f"file-{i:03d}.bin").write_bytes(blob[i * 4096 : i * 4096 + 16384])
    real_read = core.ops.backup.read_file

    def slow_read(state, item):  # type: ignore[no-untyped-def]
        state.ctx.check()  # as the engine does before each read of a chunk
        time.sleep(0.2)
        return real_read(state, item)

    monkeypatch.setattr(core.ops.backup, "read_file", slow_read)
    return d


@pytest.fixture(scope="session")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo data, built once with a fixed clock, under a base that plays $HOME.

    Everything shown is then deterministic except what the manifests hold of the machine
    (inode numbers, ctimes, hostname, the real creation time), which feeds the checksum the
    detail view shows: the manifests are rewritten here without it, with their checksums."""
    import asyncio

    from core.demo import DEMO_NOW, build_demo
    from core.repo.repository import Repository

    base = tmp_path_factory.mktemp("demo")
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(base)
    try:
        asyncio.run(build_demo(base / "root", now=DEMO_NOW))
    finally:
        if old_home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = old_home
    for project in (base / "root" / "backups").iterdir():
        _pin_manifests(Repository(base / "root", project.name))
    return base


@pytest.fixture
def demo_app(demo_base: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """An app on the demo data with a fixed clock; paths show as ~/… under the demo base."""
    from core.demo import DEMO_NOW
    from tui.app import NexusApp

    monkeypatch.setenv("HOME", str(demo_base))
    return NexusApp(demo_base / "root", clock=lambda: DEMO_NOW, poll_interval=3600)


def _pin_manifests(repo) -> None:  # type: ignore[no-untyped-def]
    """Rewrite each manifest without machine-specific values, and its checksum to match."""
    import dataclasses

    from core.repo import manifest as mf

    for meta in repo.list_metadata()[0]:
        if not meta.checksum:
            continue
        data = repo.read_manifest(meta.id)
        header = mf.read_header(data)
        source = "~/root/demo-data/" + repo.project_id  # the tmp dir's name varies per run
        header.update(hostname="demo-host", created_at=meta.created_at.isoformat(), source=source)
        writer = mf.ManifestWriter(header)
        for entry in mf.iter_entries(data):
            writer.add(dataclasses.replace(entry, ino=0, ctime_ns=0))
        compressed, checksum = writer.finish()
        repo.write_manifest(meta.id, compressed)
        meta.checksum = checksum
        repo.write_metadata(meta)
