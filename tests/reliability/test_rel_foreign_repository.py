"""A restore meets a backup repository that is not its own (design I4), attacked as the
audit's variant of "`restore --delete` wiped a repository inside the target": another
nexus-backup root kept inside the target (a host's local repository for other machines under
/srv, a copy-to twin), which this run's manager knows nothing of.

Judged by what a user checks: every byte of that repository as it was, its project still
restores, and the rest of the backup restored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rel_harness import cli_process
from rel_harness import regular_files as _files
from store_helpers import fast_kdf

from core.errors import InvalidInput
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest


@pytest.fixture(autouse=True)
def _cheap_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_kdf(monkeypatch)


def _manager(top: Path, encrypted: bool) -> BackupManager:
    if encrypted:
        return BackupManager(top, password=lambda _p: "pw", encrypt=True)
    return BackupManager(top)


async def _foreign_root(top: Path, tmp_path: Path, *, encrypted: bool = False) -> Path:
    """A nexus-backup root at `top` with one project `live` and one backup of it."""
    src = tmp_path / "live-src"
    src.mkdir(exist_ok=True)
    (src / "kept.txt").write_text("what the other repository holds")
    mgr = _manager(top, encrypted)
    await mgr.create(CreateRequest(project_id="live", data_dir=str(src)))
    return top


async def _still_restores(top: Path, before: dict[str, bytes], out: Path, encrypted: bool) -> None:
    assert _files(top / "backups") == before, "the other repository changed"
    mgr = _manager(top, encrypted)
    req = RestoreRequest(project_id="live", backup_id="latest", restore_dir=str(out))
    await mgr.restore(req)
    assert (out / "kept.txt").read_text() == "what the other repository holds"


async def _backup(tmp_path: Path, files: dict[str, str]) -> tuple[BackupManager, str]:
    data = tmp_path / "data"
    for rel, text in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(text)
    mgr = BackupManager(tmp_path / "root")
    meta = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    return mgr, meta.id


def _req(backup_id: str, target: Path, **kw: object) -> RestoreRequest:
    return RestoreRequest(project_id="p", backup_id=backup_id, restore_dir=str(target), **kw)


@pytest.mark.parametrize("encrypted", [False, True])
@pytest.mark.parametrize("where", ["top", "deep"])
async def test_restore_delete_never_removes_another_repository_in_the_target(
    tmp_path: Path, encrypted: bool, where: str
) -> None:
    mgr, bid = await _backup(tmp_path, {"app.txt": "app", "conf/site.txt": "site"})
    target = tmp_path / "target"
    top = target / ("repo" if where == "top" else "var/lib/other/repo")
    await _foreign_root(top, tmp_path, encrypted=encrypted)
    before = _files(top / "backups")
    preview = await mgr.restore(_req(bid, target, delete_extra=True, dry_run=True))
    assert not any(b"backups" in c.path.encode() for c in preview.changes if c.action == "delete")
    res = await mgr.restore(_req(bid, target, delete_extra=True, checkpoint=False))
    assert (target / "app.txt").read_text() == "app"
    assert (target / "conf" / "site.txt").read_text() == "site"
    assert res.counts.deleted == preview.counts.deleted
    await _still_restores(top, before, tmp_path / "out", encrypted)


async def test_restore_never_overwrites_what_another_repository_in_the_target_holds(
    tmp_path: Path,
) -> None:
    """The backup holds an older copy of that repository (it was backed up with the tree);
    restored over the live one it would put back older index, metadata and config files."""
    mgr, bid = await _backup(
        tmp_path,
        {
            "app.txt": "app",
            "repo/backups/live/config.json": json.dumps({"format": "nexus-backup", "old": 1}),
            "repo/backups/live/project.json": "{}",
            "repo/backups/live/index/00": "an old index",
        },
    )
    target = tmp_path / "target"
    top = await _foreign_root(target / "repo", tmp_path)
    before = _files(top / "backups")
    for overwrite in ("if-changed", "always"):
        res = await mgr.restore(_req(bid, target, overwrite=overwrite, checkpoint=False))
        assert res.counts.skipped >= 1 and res.warnings
        assert (target / "app.txt").read_text() == "app"
        assert _files(top / "backups") == before
    await _still_restores(top, before, tmp_path / "out", False)


@pytest.mark.parametrize("at", ["repo", "repo/backups", "repo/backups/live"])
async def test_a_file_of_the_backup_never_replaces_a_directory_holding_another_repository(
    tmp_path: Path, at: str
) -> None:
    mgr, bid = await _backup(tmp_path, {at: "a file where the repository now is"})
    target = tmp_path / "target"
    top = await _foreign_root(target / "repo", tmp_path)
    before = _files(top / "backups")
    res = await mgr.restore(
        _req(bid, target, overwrite="always", delete_extra=True, checkpoint=False)
    )
    assert res.counts.skipped >= 1 and res.counts.files_create == 0
    await _still_restores(top, before, tmp_path / "out", False)


@pytest.mark.parametrize("inside", ["repo/backups/live", "repo/backups/live/packs", "repo"])
async def test_a_target_inside_another_repository_is_refused(tmp_path: Path, inside: str) -> None:
    mgr, bid = await _backup(tmp_path, {"app.txt": "app"})
    top = await _foreign_root(tmp_path / "elsewhere" / "repo", tmp_path)
    before = _files(top / "backups")
    target = tmp_path / "elsewhere" / inside
    if inside == "repo":  # the repository's top: restoring there is fine, it is left alone
        await mgr.restore(_req(bid, target, delete_extra=True, checkpoint=False))
        assert (target / "app.txt").read_text() == "app"
    else:
        for dry in (True, False):
            for delete in (False, True):
                with pytest.raises(InvalidInput, match="inside a backup repository"):
                    await mgr.restore(
                        _req(bid, target, delete_extra=delete, dry_run=dry, checkpoint=False)
                    )
            with pytest.raises(InvalidInput, match="inside a backup repository"):
                await mgr.restore(_req(bid, target / "new" / "dir", dry_run=dry))
    await _still_restores(top, before, tmp_path / "out", False)


def test_the_cli_says_so_and_leaves_the_other_repository_whole(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "app.txt").write_text("app")
    root = tmp_path / "root"
    assert cli_process(root, "create", "p", str(data)).returncode == 0
    target = tmp_path / "target"
    other = target / "srv-backups"
    src = tmp_path / "live-src"
    src.mkdir()
    (src / "kept.txt").write_text("kept")
    assert cli_process(other, "create", "live", str(src)).returncode == 0
    before = _files(other)
    done = cli_process(root, "restore", "p", "latest", str(target), "--delete", "--no-checkpoint")
    assert done.returncode == 0, done.stderr
    assert (target / "app.txt").read_text() == "app"
    assert _files(other) == before, "the other root changed (its repository or its logs)"
    refused = cli_process(root, "restore", "p", "latest", str(other / "backups" / "live"))
    assert refused.returncode == 2 and "inside a backup repository" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert _files(other) == before
