"""Restore: selection, overwrite policies, deletion, dry-run, checkpoints, hostile targets."""

from __future__ import annotations

import os
import shlex

import pytest
import zstandard

from core.errors import Conflict, Damaged, InvalidInput
from core.models import BackupStatus, BackupType, CreateRequest, RestoreRequest
from core.repo import manifest as mf


@pytest.fixture
async def backup(manager, data_dir):
    return await manager.create(CreateRequest(project_id="r", data_dir=str(data_dir)))


def req(backup, target, **kw):
    return RestoreRequest(project_id="r", backup_id=backup.id, restore_dir=str(target), **kw)


async def test_restore_some_paths_and_globs(manager, backup, data_dir, tmp_path):
    out = tmp_path / "out"
    res = await manager.restore(req(backup, out, paths=["src/pkg", "*.sh"]))
    assert (out / "src" / "pkg" / "__init__.py").exists()
    assert (out / "run.sh").read_bytes() == (data_dir / "run.sh").read_bytes()
    assert not (out / "big.bin").exists() and not (out / "src" / "main.py").exists()
    assert res.files_written == 2
    with pytest.raises(InvalidInput, match="not in the backup"):
        await manager.restore(req(backup, out, paths=["nope.txt"]))


async def test_dry_run_writes_nothing(manager, backup, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "big.bin").write_text("local edit")
    res = await manager.restore(req(backup, out, dry_run=True))
    assert res.dry_run
    actions = {c.path: c.action for c in res.changes}
    assert actions["big.bin"] == "overwrite" and actions["src/main.py"] == "create"
    assert sorted(os.listdir(out)) == ["big.bin"]
    assert (out / "big.bin").read_text() == "local edit"
    assert len(await manager.list("r")) == 1  # no checkpoint on a dry run


async def test_overwrite_policies(manager, backup, data_dir, tmp_path):
    out = tmp_path / "out"
    await manager.restore(req(backup, out))
    (out / "src" / "main.py").write_text("local change\n")
    never = await manager.restore(req(backup, out, overwrite="never", checkpoint=False))
    assert (out / "src" / "main.py").read_text() == "local change\n"
    assert never.files_written == 0 and never.files_skipped >= 6
    changed = await manager.restore(req(backup, out, overwrite="if-changed", checkpoint=False))
    assert changed.files_written == 1 and changed.files_unchanged == 5
    assert (out / "src" / "main.py").read_bytes() == (data_dir / "src" / "main.py").read_bytes()
    always = await manager.restore(req(backup, out, overwrite="always", checkpoint=False))
    assert always.files_written == 6


async def test_delete_extra_files(manager, backup, data_dir, tmp_path, tree_of):
    out = tmp_path / "out"
    await manager.restore(req(backup, out))
    (out / "stray.txt").write_text("x")
    (out / "strays").mkdir()
    (out / "strays" / "y").write_text("y")
    await manager.restore(req(backup, out, delete_extra=True, checkpoint=False))
    assert tree_of(out) == tree_of(data_dir)


async def test_the_undo_is_data_and_its_request_undoes_a_partial_restore(
    manager, backup, data_dir, tmp_path, tree_of
):
    """A restore of one path with --delete over a target holding the user's own work: the
    engine's undo (a request, and the command line built from that same request) brings back
    the whole target as it was, including what --delete removed."""
    out = tmp_path / "out"
    (out / "src").mkdir(parents=True)
    (out / "src" / "main.py").write_text("my edit")
    (out / "src" / "mine.txt").write_text("only here")
    (out / "notes.txt").write_text("keep me")
    before = tree_of(out)
    res = await manager.restore(
        req(backup, out, paths=["src"], overwrite="always", delete_extra=True)
    )
    assert tree_of(out) != before
    undo = res.undo
    assert undo is not None and undo.checkpoint_id == res.checkpoint_id
    assert undo.request == RestoreRequest(
        project_id="r",
        backup_id=res.checkpoint_id,
        restore_dir=str(out.resolve()),
        overwrite="if-changed",
        delete_extra=True,
        checkpoint=False,
    )
    assert res.undo_hint == undo.command(root=str(manager.root))
    assert shlex.split(undo.command())[1:] == [
        "restore", "r", res.checkpoint_id, str(out.resolve()),
        "--overwrite", "if-changed", "--delete", "--no-checkpoint",
    ]  # fmt: skip
    again = await manager.restore(undo.request)
    assert again.undo is None and again.checkpoint_id is None  # no checkpoint of its own
    assert again.files_unchanged > 0  # only what the restore changed is written back
    assert tree_of(out) == before


async def test_checkpoint_before_overwrite_and_undo(manager, backup, data_dir, tmp_path, tree_of):
    out = tmp_path / "out"
    out.mkdir()
    (out / "big.bin").write_text("my work in progress")
    (out / "notes.txt").write_text("keep me")
    before = tree_of(out)
    res = await manager.restore(req(backup, out, overwrite="always", delete_extra=True))
    assert res.checkpoint_id and res.undo_hint and res.checkpoint_id in res.undo_hint
    assert tree_of(out) == tree_of(data_dir)
    cp = (await manager.info("r", res.checkpoint_id)).metadata
    assert cp.type == BackupType.CHECKPOINT and cp.status == BackupStatus.COMPLETED
    # undo: restore the checkpoint over the target
    await manager.restore(
        RestoreRequest(
            project_id="r",
            backup_id=cp.id,
            restore_dir=str(out),
            overwrite="always",
            delete_extra=True,
            checkpoint=False,
        )
    )
    assert tree_of(out) == before


async def test_no_checkpoint_into_empty_target(manager, backup, tmp_path):
    res = await manager.restore(req(backup, tmp_path / "fresh"))
    assert res.checkpoint_id is None
    assert len(await manager.list("r")) == 1


async def test_symlinked_dir_in_target_is_never_written_through(manager, backup, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "src")  # a trap: src -> outside
    res = await manager.restore(req(backup, out, checkpoint=False))
    assert list(outside.iterdir()) == []
    assert any("src" in c.path and c.action == "skip" for c in res.changes)
    # "always" replaces the symlink by a real directory, still writing nothing outside
    await manager.restore(req(backup, out, overwrite="always", checkpoint=False))
    assert list(outside.iterdir()) == []
    assert (out / "src").is_dir() and not (out / "src").is_symlink()


async def test_tampered_manifest_with_escaping_path_is_refused(manager, root, backup, tmp_path):
    """A manifest rewritten to hold ../ paths (with a matching checksum) writes nothing."""
    from core.repo.repository import Repository

    repo = Repository(root, "r")
    meta = repo.read_metadata(backup.id)
    evil = mf.Entry(
        path=b"../escaped.txt",
        kind=mf.FILE,
        mode=0o644,
        mtime_ns=0,
        size=0,
        hash="af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    )
    header = mf.read_header(repo.read_manifest(backup.id))
    header.pop("nexus_manifest")
    writer = mf.ManifestWriter(header)
    writer._write(mf.encode_entry(evil))  # bypass the writer's own checks, as an attacker would
    data, checksum = writer.finish()
    repo.write_manifest(backup.id, data)
    meta.checksum = checksum
    repo.write_metadata(meta)
    out = tmp_path / "out"
    with pytest.raises(Damaged, match="unsafe path"):
        await manager.restore(req(backup, out))
    assert not (tmp_path / "escaped.txt").exists()
    assert zstandard  # imported for the attacker's toolbox


async def test_restore_onto_a_file_is_refused(manager, backup, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InvalidInput, match="not a directory"):
        await manager.restore(req(backup, target))
    assert target.read_text() == "x"


async def test_restore_of_failed_backup_is_a_conflict(manager, root, backup, tmp_path):
    from core.repo.repository import Repository

    repo = Repository(root, "r")
    meta = repo.read_metadata(backup.id)
    meta.status = BackupStatus.FAILED
    repo.write_metadata(meta)
    with pytest.raises(Conflict, match="not completed"):
        await manager.restore(req(backup, tmp_path / "o"))


async def test_status_is_restoring_while_restoring(manager, backup, tmp_path):
    seen = []

    def progress(ev):
        if ev.phase == "restoring" and not seen:
            seen.append(manager.list_blocking("r")[0].status)

    await manager.restore(req(backup, tmp_path / "o"), progress=progress)
    assert seen == [BackupStatus.RESTORING]
    assert (await manager.list("r"))[0].status == BackupStatus.COMPLETED
