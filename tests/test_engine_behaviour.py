"""Lifecycle, inputs, filters, progress, cancellation, concurrency, excludes, logs."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.errors import NexusError, NotFound
from core.manager import BackupManager
from core.models import (
    BackupStatus,
    BackupType,
    CreateRequest,
    ListFilter,
    RestoreRequest,
)

MiB = 1024 * 1024


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", ".hidden", "x" * 65, "a b", "é"])
def test_invalid_ids_name_the_field(bad):
    with pytest.raises(ValidationError, match="project_id"):
        CreateRequest(project_id=bad, data_dir="/tmp")
    with pytest.raises(ValidationError, match="backup_id"):
        RestoreRequest(project_id="ok", backup_id=bad, restore_dir="/tmp")


def test_tags_are_bounded():
    with pytest.raises(ValidationError, match="tags"):
        CreateRequest(project_id="p", data_dir="/tmp", tags={f"k{i}": "v" for i in range(100)})
    with pytest.raises(ValidationError, match="tags"):
        CreateRequest(project_id="p", data_dir="/tmp", tags={"k": "v" * 1000})


async def test_unknown_project_and_backup(manager, data_dir):
    with pytest.raises(NotFound, match="unknown project"):
        await manager.list("nope")
    await manager.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    with pytest.raises(NotFound, match="not found"):
        await manager.info("p", "20200101-000000-abcdef")


async def test_missing_or_bad_data_dir(manager, tmp_path):
    with pytest.raises(NexusError, match="no such directory"):
        await manager.create(CreateRequest(project_id="p", data_dir=str(tmp_path / "missing")))
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NexusError, match="not a directory"):
        await manager.create(CreateRequest(project_id="p", data_dir=str(f)))
    assert not (manager.root / "backups" / "p").exists()  # nothing created for bad input


async def test_lifecycle_and_metadata_file(manager, root, data_dir):
    events = []
    created = []
    meta = await manager.create(
        CreateRequest(
            project_id="p", data_dir=str(data_dir), tags={"env": "prod"}, extra={"commit": "abc"}
        ),
        progress=events.append,
        on_created=created.append,
    )
    assert created[0].status == BackupStatus.PENDING and created[0].id == meta.id
    phases = [e.phase for e in events]
    assert phases[0] == "scanning" and "reading" in phases and phases[-1] == "done"
    reading = [e for e in events if e.phase == "reading"]
    assert reading[0].bytes_total == meta.size_bytes
    path = root / "backups" / "p" / f"backup_{meta.id}" / "metadata.json"
    import json

    on_disk = json.loads(path.read_text())
    for field in (
        "id",
        "project_id",
        "type",
        "status",
        "created_at",
        "completed_at",
        "size_bytes",
        "checksum",
        "parent_backup_id",
        "files_count",
        "error_message",
        "tags",
        "extra",
    ):
        assert field in on_disk
    assert on_disk["status"] == "completed" and on_disk["tags"] == {"env": "prod"}
    assert on_disk["extra"] == {"commit": "abc"}
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_list_filters(manager, data_dir):
    full = await manager.create(
        CreateRequest(project_id="p", data_dir=str(data_dir), tags={"env": "prod"})
    )
    inc = await manager.create(
        CreateRequest(project_id="p", data_dir=str(data_dir), backup_type=BackupType.INCREMENTAL)
    )
    cp = await manager.create(
        CreateRequest(
            project_id="p",
            data_dir=str(data_dir),
            backup_type=BackupType.CHECKPOINT,
            name="before-upgrade",
        )
    )
    ids = [m.id for m in await manager.list("p")]
    assert ids == [cp.id, inc.id, full.id]  # newest first

    async def ids_for(**kw):
        return [m.id for m in await manager.list("p", ListFilter(**kw))]

    assert await ids_for(type=BackupType.INCREMENTAL) == [inc.id]
    assert await ids_for(tag="env=prod") == [full.id]
    assert await ids_for(tag="name") == [cp.id]
    assert await ids_for(text="upgrade") == [cp.id]
    assert await ids_for(status=BackupStatus.FAILED) == []
    now = datetime.now(UTC)
    assert len(await ids_for(since=now - timedelta(hours=1))) == 3
    assert await ids_for(until=now - timedelta(hours=1)) == []


async def test_project_summaries_all_or_only_some(manager, data_dir):
    for project in ("a", "b", "c"):
        await manager.create(CreateRequest(project_id=project, data_dir=str(data_dir)))
    await manager.create(CreateRequest(project_id="b", data_dir=str(data_dir)))
    every = {p.project_id: p.backups for p in await manager.projects()}
    assert every == {"a": 1, "b": 2, "c": 1}
    some = await manager.projects(only={"b", "gone"})  # a name without a project: left out
    assert [(p.project_id, p.backups, p.data_dir) for p in some] == [("b", 2, str(data_dir))]


async def test_cancel_marks_failed_and_cleans_up(manager, root, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    for i in range(60):
        (d / f"{i}.bin").write_bytes(os.urandom(MiB))
    started = asyncio.Event()

    def progress(ev):
        if ev.phase == "reading" and ev.bytes_done > 0:
            started.set()

    task = asyncio.create_task(
        manager.create(CreateRequest(project_id="c", data_dir=str(d)), progress=progress)
    )
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [meta] = await manager.list("c")
    assert meta.status == BackupStatus.FAILED and meta.error_message == "cancelled"
    assert not list((root / "backups" / "c").glob("packs/*/*"))  # its packs removed
    assert not list((root / "backups" / "c" / "locks").glob("*"))


async def test_concurrent_creates_in_one_process(manager, data_dir, tmp_path, tree_of):
    metas = await asyncio.gather(
        *(manager.create(CreateRequest(project_id="cc", data_dir=str(data_dir))) for _ in range(3))
    )
    assert all(m.status == BackupStatus.COMPLETED for m in metas)
    for m in metas:
        out = tmp_path / m.id
        await manager.restore(RestoreRequest(project_id="cc", backup_id=m.id, restore_dir=str(out)))
        assert tree_of(out) == tree_of(data_dir)


def test_concurrent_creates_in_several_processes(root, data_dir):
    code = (
        "import asyncio,sys;from core.manager import BackupManager;from core.models import "
        "CreateRequest;asyncio.run(BackupManager(sys.argv[1]).create("
        "CreateRequest(project_id='mp',data_dir=sys.argv[2])))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(root), str(data_dir)], env=env)
        for _ in range(4)
    ]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    mgr = BackupManager(root)
    metas = mgr.list_blocking("mp")
    assert len(metas) == 4 and all(m.status == BackupStatus.COMPLETED for m in metas)
    for m in metas:
        assert asyncio.run(mgr.verify("mp", m.id)).ok
    assert not list((root / "backups" / "mp" / "locks").glob("*"))


async def test_excludes_and_nexusignore(manager, data_dir, tmp_path):
    (data_dir / ".nexusignore").write_text("*.bin\nsrc/pkg/\n")
    meta = await manager.create(
        CreateRequest(project_id="x", data_dir=str(data_dir), excludes=["secret.txt"])
    )
    out = tmp_path / "out"
    await manager.restore(RestoreRequest(project_id="x", backup_id=meta.id, restore_dir=str(out)))
    assert not (out / "big.bin").exists()
    assert not (out / "src" / "pkg").exists()
    assert not (out / "secret.txt").exists()
    assert (out / "src" / "main.py").exists() and (out / ".nexusignore").exists()


async def test_special_files_skipped_with_warning(manager, data_dir):
    os.mkfifo(data_dir / "pipe")
    meta = await manager.create(CreateRequest(project_id="s", data_dir=str(data_dir)))
    assert meta.status == BackupStatus.COMPLETED
    assert any("pipe" in w and "fifo" in w for w in meta.stats.warnings)
    log = manager.logger.read("s")
    assert any(r.level == "WARNING" and "fifo" in r.message for r in log)


async def test_repository_inside_data_dir_is_not_backed_up(tmp_path, data_dir):
    mgr = BackupManager(data_dir / ".nexus")
    meta = await mgr.create(CreateRequest(project_id="self", data_dir=str(data_dir)))
    tree = await mgr.browse("self", meta.id)
    assert ".nexus" not in [t.name for t in tree]


async def test_every_operation_is_logged(manager, data_dir, tmp_path):
    meta = await manager.create(CreateRequest(project_id="l", data_dir=str(data_dir)))
    await manager.restore(
        RestoreRequest(project_id="l", backup_id=meta.id, restore_dir=str(tmp_path / "o"))
    )
    await manager.verify("l", meta.id)
    await manager.delete("l", meta.id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    log_file = manager.root / "logs" / f"l_{day}.log"
    text = log_file.read_text()
    for op in ("create", "restore", "verify", "delete", "reclaim"):
        assert f" {op} " in text.replace("  ", " ")
    assert meta.id in text


def test_core_does_not_import_ui_frameworks():
    code = (
        "import sys, core.manager, cli.main, core.validator, core.logger;"
        "bad=[m for m in ('textual','fastapi','uvicorn') if m in sys.modules];"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


async def test_browse_lists_children(manager, data_dir):
    meta = await manager.create(CreateRequest(project_id="b", data_dir=str(data_dir)))
    top = await manager.browse("b", meta.id)
    assert [t.name for t in top][:2] == ["empty", "src"]  # directories first
    src = next(t for t in top if t.name == "src")
    assert src.has_children
    inner = await manager.browse("b", meta.id, "src")
    assert {t.name for t in inner} == {"main.py", "pkg"}
    with pytest.raises(NotFound):
        await manager.browse("b", meta.id, "nope")


def test_data_dir_vanishing_mid_backup_fails_it(manager, data_dir):
    import shutil

    from core.ops.progress import OperationContext

    def emit(ev):  # called in the engine's thread, right before the walk starts
        if ev.phase == "scanning" and data_dir.exists():
            shutil.rmtree(data_dir)

    ctx = OperationContext("create", "gone", emit=emit)
    with pytest.raises(NexusError):
        manager.create_blocking(CreateRequest(project_id="gone", data_dir=str(data_dir)), ctx)
    [meta] = manager.list_blocking("gone")
    assert meta.status == BackupStatus.FAILED and meta.files_count == 0


async def test_restore_below_a_file_is_invalid(manager, data_dir, tmp_path):
    from core.errors import InvalidInput

    meta = await manager.create(CreateRequest(project_id="f", data_dir=str(data_dir)))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InvalidInput, match="not a directory"):
        await manager.restore(
            RestoreRequest(
                project_id="f", backup_id=meta.id, restore_dir=str(tmp_path / "afile" / "sub")
            )
        )


async def test_progress_as_an_async_iterator(manager, data_dir):
    from core.ops.progress import ProgressStream

    stream = ProgressStream()
    task = asyncio.create_task(
        manager.create(CreateRequest(project_id="it", data_dir=str(data_dir)), progress=stream)
    )
    try:
        phases = [event.phase async for event in stream]
    finally:
        meta = await task
    assert phases[0] == "scanning" and phases[-1] == "done"
    assert meta.status == BackupStatus.COMPLETED


async def test_info_marks_a_deleted_parent_of_the_chain(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each backup is complete on its own: deleting its parent leaves it whole, and info says
    the parent is gone instead of showing it as if it existed."""
    from core.manager import BackupManager
    from core.models import BackupType, CreateRequest

    data = tmp_path / "data"
    data.mkdir()
    (data / "a").write_text("one")
    mgr = BackupManager(tmp_path / "root")
    first = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    (data / "a").write_text("two")
    second = await mgr.create(
        CreateRequest(project_id="p", data_dir=str(data), backup_type=BackupType.INCREMENTAL)
    )
    assert second.parent_backup_id == first.id
    await mgr.delete("p", first.id)
    info = await mgr.info("p", second.id)
    assert info.parent_chain == [first.id] and info.deleted_parents == [first.id]
