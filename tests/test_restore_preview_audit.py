"""Audit of the restore's preview (invariant 5) against the real restore: what the plan
calls a creation never replaces what appeared at that name since (while the checkpoint was
taken).

Each test checks what a user would: the bytes of the target after the restore."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from restore_helpers import run_restorer

from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.ops import restore_anon

P = "pa"


async def _backup(mgr: BackupManager, src: Path):
    return await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))


def _req(backup_id: str, target: Path, **kw: object) -> RestoreRequest:
    return RestoreRequest(project_id=P, backup_id=backup_id, restore_dir=str(target), **kw)


# --- a creation never replaces what appeared after the plan --------------------------------


@pytest.mark.parametrize("anon", [True, False], ids=["nameless-inode", "temp-name"])
@pytest.mark.parametrize("kind", ["file", "symlink"])
async def test_a_name_taken_after_the_plan_is_never_replaced_by_a_creation(
    tmp_path, monkeypatch, anon, kind
):
    """The plan says `new` is created (nothing was there) and `a.txt` overwritten, so a
    checkpoint is taken first; while it is taken, the user's program writes `new`. That file
    is in no checkpoint: the restore must leave it (and say so), not replace it while its
    figures still say "created"."""
    if anon and not restore_anon.supported():
        pytest.skip("no nameless files here")
    monkeypatch.setattr(restore_anon, "supported", lambda: anon)
    root = tmp_path / "root"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"backup a")
    if kind == "file":
        (src / "new").write_bytes(b"backup new")
    else:
        os.symlink("a.txt", src / "new")
    meta = await _backup(BackupManager(root), src)
    target = tmp_path / "target"
    target.mkdir()
    (target / "a.txt").write_bytes(b"user a, differs")
    taken: list[bool] = []

    def checkpoint(_target: Path, _fd: int) -> str | None:
        (target / "new").write_bytes(b"user data written meanwhile")
        taken.append(True)
        return None

    res = run_restorer(root, P, meta.id, target, checkpoint=checkpoint)
    assert taken, "the plan overwrote something: a checkpoint was due"
    assert res.counts.files_overwrite == 1
    assert (target / "a.txt").read_bytes() == b"backup a"
    assert not (target / "new").is_symlink()
    assert (target / "new").read_bytes() == b"user data written meanwhile"
    assert any("new" in w for w in res.warnings), res.warnings
    assert sorted(os.listdir(target)) == ["a.txt", "new"], "a temp file was left"
