"""Byte-exact round trips: what is restored is what was backed up."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.manager import BackupManager
from core.models import BackupStatus, BackupType, CreateRequest, RestoreRequest


@pytest.fixture
def manager(engine):
    """This suite runs on every engine store (conftest.ENGINE_STORES)."""
    return engine


async def test_full_backup_restores_byte_exact(manager, data_dir, tmp_path, tree_of):
    meta = await manager.create(CreateRequest(project_id="web", data_dir=str(data_dir)))
    assert meta.status == BackupStatus.COMPLETED
    assert meta.files_count == 6
    assert meta.size_bytes == sum(
        p.stat().st_size for p in data_dir.rglob("*") if p.is_file() and not p.is_symlink()
    )
    assert meta.checksum and meta.checksum.startswith("blake3:")
    assert meta.stats.dirs_count == 3 and meta.stats.symlinks_count == 2
    out = tmp_path / "out"
    result = await manager.restore(
        RestoreRequest(project_id="web", backup_id=meta.id, restore_dir=str(out))
    )
    assert result.verified and result.files_written == 6
    assert tree_of(out) == tree_of(data_dir)
    assert (out / "empty").is_dir()
    assert os.readlink(out / "dangling") == "/nonexistent/target"


async def test_odd_names_survive(manager, tmp_path, tree_of):
    d = tmp_path / "odd"
    d.mkdir()
    names = [
        b"plain",
        b"with space",
        b"new\nline",
        b"tab\there",
        b"\xff\xfe-not-utf8",
        "emoji-🎉".encode(),
        b"-dash",
        b".hidden",
        b"a" * 255,
    ]
    for n in names:
        with open(os.path.join(os.fsencode(d), n), "wb") as f:
            f.write(n * 3)
    meta = await manager.create(CreateRequest(project_id="odd", data_dir=str(d)))
    out = tmp_path / "out"
    await manager.restore(RestoreRequest(project_id="odd", backup_id=meta.id, restore_dir=str(out)))
    assert tree_of(out) == tree_of(d)


async def test_large_file_spans_many_chunks(manager, tmp_path):
    d = tmp_path / "big"
    d.mkdir()
    blob = os.urandom(3 * 1024 * 1024) * 4 + os.urandom(5 * 1024 * 1024)  # 17 MiB, repeats
    (d / "model.ckpt").write_bytes(blob)
    meta = await manager.create(CreateRequest(project_id="ml", data_dir=str(d)))
    assert meta.stats.chunks_new + meta.stats.chunks_reused >= 4
    assert meta.stats.bytes_stored < len(blob)  # the repeated 3 MiB blocks deduplicate
    out = tmp_path / "out"
    await manager.restore(RestoreRequest(project_id="ml", backup_id=meta.id, restore_dir=str(out)))
    assert (out / "model.ckpt").read_bytes() == blob


async def test_compressible_data_is_stored_smaller(manager, tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "app.log").write_text("2026-11-29 INFO request served in 12ms\n" * 200_000)
    meta = await manager.create(CreateRequest(project_id="logs", data_dir=str(d)))
    assert meta.stats.bytes_stored < meta.size_bytes / 10


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
trees = st.recursive(
    st.binary(max_size=3000),
    lambda children: st.dictionaries(names, children, max_size=4),
    max_leaves=12,
)


def _write(path: Path, node) -> None:
    if isinstance(node, dict):
        path.mkdir()
        for name, child in node.items():
            _write(path / name, child)
    else:
        path.write_bytes(node)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(names, trees, max_size=5))
def test_any_tree_round_trips(tree):
    import asyncio

    from tree_compare import tree_snapshot as tree_of

    work = Path(tempfile.mkdtemp(prefix="nexus-prop-"))
    try:
        src = work / "src"
        _write(src, tree)
        mgr = BackupManager(work / "repo")
        meta = asyncio.run(mgr.create(CreateRequest(project_id="p", data_dir=str(src))))
        out = work / "out"
        asyncio.run(
            mgr.restore(RestoreRequest(project_id="p", backup_id=meta.id, restore_dir=str(out)))
        )
        assert tree_of(out) == tree_of(src)
    finally:
        shutil.rmtree(work)


@pytest.mark.parametrize("kind", list(BackupType))
async def test_every_type_restores(manager, data_dir, tmp_path, kind, tree_of):
    first = await manager.create(CreateRequest(project_id="t", data_dir=str(data_dir)))
    (data_dir / "src" / "main.py").write_text("changed\n")
    meta = await manager.create(
        CreateRequest(project_id="t", data_dir=str(data_dir), backup_type=kind)
    )
    assert meta.type == kind
    if kind in (BackupType.INCREMENTAL, BackupType.CHECKPOINT):
        assert meta.parent_backup_id == first.id
    else:  # a full reads afresh; a snapshot stands alone (it records no parent)
        assert meta.parent_backup_id is None
    if kind == BackupType.CHECKPOINT:
        assert meta.tags["name"].startswith("checkpoint-")
    out = tmp_path / "out"
    await manager.restore(RestoreRequest(project_id="t", backup_id=meta.id, restore_dir=str(out)))
    assert tree_of(out) == tree_of(data_dir)
