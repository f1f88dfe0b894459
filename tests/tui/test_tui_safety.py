"""Issue #9 in the TUI: the restore preview tells the truth past the list's cap, a restore is
cancelled from its dialog without partial files, backing up another directory is confirmed,
and a read-only repository opens, restores, and refuses writes with the reason.

Everything runs on the real core and asserts what a person would check: the numbers the
dialog shows, the bytes in the target, what is (not) on disk afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.widgets import Button, Checkbox, Input
from tui_helpers import notes, plain, settle, type_text, wait_for

from core.manager import BackupManager
from core.models import (
    BackupMetadata,
    CreateRequest,
    RestoreChange,
    RestoreCounts,
    RestoreRequest,
    RestoreResult,
)
from tui.app import NexusApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.new_backup import NewBackupScreen
from tui.screens.restore import RestoreScreen, confirm_text, drift_text, summarize

TMP_PREFIX = ".nexus-restore-"


def _leftovers(target: Path) -> list[Path]:
    return [p for p in target.rglob("*") if p.name.startswith(TMP_PREFIX)]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def _backup_of(root: Path, data: Path, project: str = "proj") -> BackupMetadata:
    mgr = BackupManager(root)
    await mgr.create_project(project, str(data))
    return await mgr.create(CreateRequest(project_id=project, data_dir=str(data)))


# -- 1. the preview is the truth: exact counts, never the capped list


def _capped_result(**counts: int) -> RestoreResult:
    """A dry run as the engine reports one past its list's cap: the 1,000 listed changes are
    all creations, while the exact counts hold overwrites and deletions beyond them."""
    changes = [RestoreChange(path=f"new/{i:04d}.txt", action="create", size=10) for i in range(999)]
    changes.append(RestoreChange(path="old/0000.txt", action="overwrite", size=10))
    return RestoreResult(
        project_id="proj",
        backup_id="b1",
        restore_dir="/srv/target",
        dry_run=True,
        counts=RestoreCounts(**counts),
        changes=changes,
        changes_truncated=True,
    )


def test_summary_and_confirmation_show_the_exact_counts_past_the_cap() -> None:
    result = _capped_result(
        files_create=1_500,
        dirs_create=2,
        files_overwrite=1_200,
        files_unchanged=7,
        delete_files=300,
        delete_dirs=4,
        bytes_to_write=3 * 1024 * 1024,
    )
    summary = summarize(result)
    assert "1,500 files and 2 folders to create" in summary
    assert "1,200 files to overwrite" in summary
    assert "300 files and 4 folders to delete" in summary
    assert "7 unchanged" in summary and "3.0 MiB to write" in summary
    req = RestoreRequest(project_id="proj", backup_id="b1", restore_dir="/srv/target")
    body = confirm_text("b1", req, result).plain
    assert "1,200 files OVERWRITTEN" in body
    assert "old/0000.txt" in body and "… and 1,199 more" in body  # examples, then the rest
    assert "300 files and 4 folders (with all they hold) DELETED from the target" in body
    assert body.count("more") == 1  # no deletion is listed: the count alone says it
    assert "checkpoint of the target is taken first" in body
    assert "Nothing existing" not in body
    no_checkpoint = confirm_text("b1", req.model_copy(update={"checkpoint": False}), result)
    assert "No checkpoint will be taken: this cannot be undone" in no_checkpoint.plain
    read_only = confirm_text(
        "b1", req.model_copy(update={"checkpoint": False}), result, read_only=True
    )
    assert "the repository is read-only" in read_only.plain


def test_confirmation_says_nothing_is_spared_only_when_the_counts_say_so() -> None:
    req = RestoreRequest(project_id="proj", backup_id="b1", restore_dir="/srv/target")
    spared = _capped_result(files_create=1_000, bytes_to_write=10_000)
    assert "Nothing existing is overwritten or deleted" in confirm_text("b1", req, spared).plain
    harmful = _capped_result(files_create=1_000, files_overwrite=1)
    body = confirm_text("b1", req, harmful).plain
    assert "Nothing existing" not in body and "1 file OVERWRITTEN" in body


def test_a_confirmation_names_modes_set_again_on_what_exists() -> None:
    """A restore that only gives existing files and directories their mode again (a 0700
    directory made 0755) is destructive: a checkpoint is taken. The confirmation must say
    what changes, not only that a checkpoint is taken of nothing it names."""
    req = RestoreRequest(project_id="proj", backup_id="b1", restore_dir="/srv/target")
    result = _capped_result(files_create=1_000, files_metadata=2, dirs_metadata=1)
    body = confirm_text("b1", req, result).plain
    assert "Nothing existing" not in body
    assert "3 existing entries get only their mode or times set again" in body, body
    assert "checkpoint of the target is taken first" in body


def test_a_restore_that_did_more_than_its_preview_says_so() -> None:
    preview = _capped_result(files_create=5, files_overwrite=1)
    same = _capped_result(files_overwrite=1)
    assert drift_text(preview, same) == ""
    more = _capped_result(files_overwrite=4, delete_files=2)
    text = drift_text(preview, more)
    assert "changed after the preview" in text
    assert "4 overwritten and 2 deleted (the preview said 1 and 0)" in text
    # modes set again on more than the preview said (a file chmodded meanwhile) count too
    chmodded = _capped_result(files_overwrite=1, files_metadata=2, dirs_metadata=1)
    text = drift_text(preview, chmodded)
    assert "3 with only mode or times set again (the preview said 0)" in text, text


@pytest.mark.slow
async def test_preview_past_the_cap_names_every_overwrite_and_deletion(
    tui_root: Path, tmp_path: Path
) -> None:
    """1,050 files backed up; the target holds all of them changed, plus 3 files the backup
    does not have. The preview and the confirmation count all 1,050 overwrites and the 3
    deletions (the engine lists only 1,000 changes); the restore then does exactly that."""
    data = tmp_path / "many"
    data.mkdir()
    for i in range(1_050):
        (data / f"f{i:04d}.txt").write_bytes(f"backed up {i}\n".encode())
    meta = await _backup_of(tui_root, data)
    target = tmp_path / "target"
    shutil.copytree(data, target)
    for p in target.iterdir():
        p.write_bytes(b"changed since, and longer than before\n")
    for name in ("extra-1", "extra-2", "extra-3"):
        (target / name).write_bytes(b"not in the backup\n")
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RestoreScreen) and screen.backup.id == meta.id
        screen.query_one("#target", Input).value = str(target)
        screen.query_one("#delete-extra", Checkbox).value = True
        await pilot.press("ctrl+d")
        await settle(pilot)
        summary = plain(screen.query_one("#preview-summary"))
        assert "1,050 files to overwrite" in summary and "3 files to delete" in summary
        await pilot.press("ctrl+s")
        await settle(pilot)
        body = plain(app.screen.query_one("#confirm-body"))
        assert "1,050 files OVERWRITTEN" in body
        assert "3 files DELETED from the target" in body
        assert "checkpoint of the target is taken first" in body
        await pilot.press("y")
        await settle(pilot)
        assert _tree_bytes(target) == _tree_bytes(data)
        assert screen.op.result.checkpoint_id


async def test_preview_of_a_small_restore_counts_exactly(tui_root: Path, seeded: dict) -> None:
    """The figures of the earlier flow tests, now from the engine's counts."""
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down", "r")  # the full backup
        screen = app.screen
        await pilot.press("ctrl+d")
        await settle(pilot)
        assert "3 files and 2 folders to create" in plain(screen.query_one("#preview-summary"))
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Nothing existing is overwritten" in plain(app.screen.query_one("#confirm-body"))
        await pilot.press("n", "escape")
        await pilot.press("r")
        screen = app.screen
        screen.query_one("#target", Input).value = str(seeded["data"])  # a.txt differs
        await pilot.press("ctrl+s")
        await settle(pilot)
        body = plain(app.screen.query_one("#confirm-body"))
        assert "1 file OVERWRITTEN" in body and "a.txt" in body


async def _confirm_restore_into(app: NexusApp, pilot, target: Path):
    """The full backup's restore screen with `target` typed, at its confirmation."""
    await pilot.press("down", "r")
    screen = app.screen
    screen.query_one("#target", Input).value = str(target)
    await pilot.press("ctrl+s")
    await settle(pilot)
    return screen


async def test_a_target_changed_after_the_preview_is_reported(
    tui_root: Path, seeded: dict, tmp_path: Path
) -> None:
    """Between the preview (1 file to overwrite) and the restore, something else changes
    another file of the target: the result says the restore overwrote more than previewed."""
    target = tmp_path / "target"
    shutil.copytree(seeded["data"], target)  # a.txt differs from the full backup
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await _confirm_restore_into(app, pilot, target)
        assert "1 file OVERWRITTEN" in plain(app.screen.query_one("#confirm-body"))
        (target / "sub" / "b.txt").write_bytes(b"changed by someone else meanwhile\n")
        await pilot.press("y")
        await settle(pilot)
        text = plain(screen.query_one("#result"))
        assert "changed after the preview: 2 overwritten" in text
    assert (target / "sub" / "b.txt").read_bytes() == b"bravo\n" * 100


# -- 2. cancel inside the restore dialog


@pytest.fixture
def slow_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow disk under the real engine: each chunk it reads for a restore takes 400 ms, so
    a 20 MiB file is caught mid-way. Its parts (written by several threads at once) are made
    2 MiB instead of 8, so that there are more parts than threads on any machine."""
    import core.ops.restore

    monkeypatch.setattr(core.ops.restore, "PART_SIZE", 2 * 1024 * 1024)
    real_read = core.ops.restore.Restorer._read_many

    def slow_read(self, digests_hex: list[str], show: str):  # type: ignore[no-untyped-def]
        for blob in real_read(self, digests_hex, show):
            time.sleep(0.4)  # slow enough that a loaded machine still catches it mid-way
            yield blob

    monkeypatch.setattr(core.ops.restore.Restorer, "_read_many", slow_read)


def test_restore_dialog_binds_c_to_cancel_with_a_description() -> None:
    bindings = [b for b in RestoreScreen.BINDINGS if isinstance(b, Binding) and b.key == "c"]
    assert [(b.action, b.id, b.description) for b in bindings] == [
        ("cancel_restore", "restore.cancel", "Cancel restore")
    ]


@pytest.mark.slow
async def test_c_in_the_restore_dialog_cancels_and_leaves_no_partial_file(
    tui_root: Path, tmp_path: Path, slow_restore: None
) -> None:
    data = tmp_path / "big"
    data.mkdir()
    big = os.urandom(20 * 1024 * 1024)
    (data / "big.bin").write_bytes(big)
    (data / "small.txt").write_bytes(b"small\n")
    await _backup_of(tui_root, data)
    target = tmp_path / "target"
    target.mkdir()
    old = b"the version in the target before the restore\n"
    (target / "big.bin").write_bytes(old)
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RestoreScreen)
        cancel = screen.query_one("#cancel-op", Button)
        assert not cancel.display  # nothing to cancel yet
        field = screen.query_one("#target", Input)
        field.value = str(target)
        field.focus()
        field.cursor_position = len(field.value)  # (`end` would take the completion offered)
        await pilot.press("c")  # typing `c` in a field types it
        assert field.value == f"{target}c" and screen.op is None
        await pilot.press("backspace")
        screen.query_one("#checkpoint", Checkbox).value = False
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        op = screen.op
        assert op is not None and cancel.display and "Cancel restore (c)" in str(cancel.label)
        await wait_for(pilot, lambda: op.progress is not None and op.progress.bytes_done > 0)
        await pilot.press("c")
        await wait_for(pilot, lambda: not op.running)
        await settle(pilot)
        assert op.state == "cancelled"
        text = plain(screen.query_one("#result"))
        assert "Restore cancelled" in text and "no partly written file" in text
        assert not cancel.display
    assert (target / "big.bin").read_bytes() in (old, big)  # the old file, or all of the new
    assert _leftovers(target) == []


# -- 3. backing up another directory than the project's


@pytest.fixture
def other_dir(tmp_path: Path) -> Path:
    d = tmp_path / "elsewhere"
    d.mkdir()
    (d / "only-here.txt").write_bytes(b"a file of the other directory\n")
    return d


async def _start_backup_of(pilot, directory: Path) -> NewBackupScreen:  # type: ignore[no-untyped-def]
    await pilot.press("n")
    form = pilot.app.screen
    assert isinstance(form, NewBackupScreen)
    form.query_one("#data-dir", Input).value = str(directory)
    await pilot.press("ctrl+s")
    await pilot.pause()
    return form


def _backup_dirs(root: Path) -> set[str]:
    return {p.name for p in (root / "backups" / "proj").glob("backup_*")}


def test_another_directory_is_told_apart_as_the_engine_stores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spellings of the same path that the engine stores alike ask nothing; any other
    spelling asks (a question too many is harmless, a refusal by the engine is not)."""
    from tui.validation import is_other_directory

    monkeypatch.setenv("HOME", str(tmp_path))
    d = tmp_path / "data"
    assert not is_other_directory(f"{d}/", str(d))
    assert not is_other_directory("~/data", str(d))
    assert not is_other_directory(f"  {d} ", str(d))
    assert not is_other_directory(str(d), None)  # nothing remembered yet
    assert is_other_directory(str(tmp_path / "other"), str(d))
    assert is_other_directory(f"{d}/sub/..", str(d))  # not normalised, as the engine


async def test_backing_up_another_directory_is_confirmed_naming_both(
    tui_root: Path, seeded: dict, other_dir: Path
) -> None:
    before = _backup_dirs(tui_root)
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        form = await _start_backup_of(pilot, other_dir)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and form.op is None
        body = plain(confirm.query_one("#confirm-body"))
        assert str(seeded["data"]) in body and str(other_dir) in body
        assert "show as removed" in body
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is form and form.op is not None and form.op.state == "done"
        made = form.op.result
        info = await BackupManager(tui_root).info("proj", made.id)
        assert info.manifest.source == str(other_dir)
        assert made.files_count == 1
        assert _backup_dirs(tui_root) == before | {f"backup_{made.id}"}
        projects = await BackupManager(tui_root).projects()
        assert projects[0].data_dir == str(other_dir)  # the project now backs this one up


async def test_declining_another_directory_backs_up_nothing(
    tui_root: Path, seeded: dict, other_dir: Path
) -> None:
    before = _backup_dirs(tui_root)
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        form = await _start_backup_of(pilot, other_dir)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert app.screen is form and form.op is None
        assert "not started" in plain(form.query_one("#form-error"))
        # the remembered directory, typed back in, starts at once (no question)
        field = form.query_one("#data-dir", Input)
        field.value = str(seeded["data"])
        await pilot.press("ctrl+s")
        assert form.op is not None
        await settle(pilot)
    assert len(_backup_dirs(tui_root) - before) == 1
    projects = await BackupManager(tui_root).projects()
    assert projects[0].data_dir == str(seeded["data"])


# -- 4. a read-only repository


def _mount_tmpfs(where: Path) -> bool:
    where.mkdir()
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], capture_output=True
        ).returncode
        == 0
    )


@pytest.fixture
async def read_only_root(tmp_path: Path, tui_data: Path) -> Iterator[dict]:  # type: ignore[misc]
    """A repository with project `proj` and a backup, then made read-only: a tmpfs remounted
    read-only when running as root (root writes through permissions), else `chmod -w`."""
    mount = tmp_path / "media"
    mounted = os.geteuid() == 0 and _mount_tmpfs(mount)
    if os.geteuid() == 0 and not mounted:
        pytest.skip("running as root and cannot mount a tmpfs: no way to make a read-only root")
    mount.mkdir(exist_ok=True)
    root = mount / "root"
    meta = await _backup_of(root, tui_data)
    try:
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        else:
            for path in [root, *root.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o555)
        yield {"root": root, "backup": meta, "data": tui_data}
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)
        else:
            for path in [root, *root.rglob("*")]:
                with contextlib.suppress(OSError):
                    if path.is_dir():
                        path.chmod(0o755)


async def test_read_only_repository_says_so_and_refuses_writes_with_the_reason(
    read_only_root: dict,
) -> None:
    root = read_only_root["root"]
    app = NexusApp(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.read_only
        banner = plain(app.main.query_one("#read-only"))
        assert "Read-only repository" in banner
        for key, what in (("n", "back up"), ("d", "delete a backup"), ("N", "create a project")):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app.main, key  # no form that could only fail
            assert any(f"Cannot {what}" in n and "read-only" in n for n in notes(app)), key
        await pilot.press("ctrl+p")
        await type_text(pilot, "new backup")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is app.main
        assert sum("Cannot back up" in n for n in notes(app)) == 2
        # the restore dialog offers no checkpoint: one cannot be written there
        await app.push_screen(RestoreScreen(read_only_root["backup"], str(read_only_root["data"])))
        await pilot.pause()
        tick = app.screen.query_one("#checkpoint", Checkbox)
        assert not tick.value and tick.disabled and str(tick.label) == "no checkpoint"
    assert (root / "backups" / "proj" / f"backup_{read_only_root['backup'].id}").is_dir()


async def test_read_only_repository_lists_and_restores(
    read_only_root: dict, tmp_path: Path
) -> None:
    root, data = read_only_root["root"], read_only_root["data"]
    target = tmp_path / "restored"
    app = NexusApp(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert [p.project_id for p in app.main.projects.projects] == ["proj"]
        assert [b.id for b in app.main.table.backups] == [read_only_root["backup"].id]
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RestoreScreen)
        tick = screen.query_one("#checkpoint", Checkbox)
        assert not tick.value and tick.disabled  # a checkpoint cannot be written there
        screen.query_one("#target", Input).value = str(target)
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert screen.op is not None and screen.op.state == "done", notes(app)
        assert not [n for n in notes(app) if "failed" in n]
    assert _tree_bytes(target) == _tree_bytes(data)


async def test_a_directory_swapped_for_a_symlink_after_the_preview_sends_nothing_out(
    tui_root: Path, seeded: dict, tmp_path: Path
) -> None:
    """Between the preview and the confirmation, the target's `sub/` is swapped for a
    symlink to a directory outside the target, holding a file of the name the backup has
    there. The restore writes nothing through the link, and its result says what it left."""
    target = tmp_path / "target"
    shutil.copytree(seeded["data"], target)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.txt").write_bytes(b"outside, never to be written\n")
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await _confirm_restore_into(app, pilot, target)
        assert "1 file OVERWRITTEN" in plain(app.screen.query_one("#confirm-body"))
        shutil.rmtree(target / "sub")
        os.symlink(outside, target / "sub")
        await pilot.press("y")
        await settle(pilot)
        text = plain(screen.query_one("#result"))
        assert "sub" in text and "symlink" in text, text
    assert (outside / "b.txt").read_bytes() == b"outside, never to be written\n"
    assert sorted(os.listdir(outside)) == ["b.txt"]
    assert os.readlink(target / "sub") == str(outside)
