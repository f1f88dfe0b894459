"""Audit of the TUI's destructive actions, driven by the keyboard alone through Pilot against
the real core: every one asks first, and Escape (or Enter, on the No a dangerous question
focuses) changes no byte on disk; the restore does no more than its preview named (I5); and
another process (a real CLI) deleting the backup, backing the project up or deleting the
backup between the question and the answer never makes the answer do what was not shown."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Select
from tui_helpers import notes, plain, settle, type_text, wait_for

from core.manager import BackupManager
from tui.app import NexusApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.policy import PolicyScreen
from tui.screens.restore import RestoreScreen
from tui.widgets.tick import Tick

REPO = Path(__file__).resolve().parents[2]
SIZE = (100, 30)
TMP_PREFIX = ".nexus-restore-"


def state(top: Path) -> dict[str, tuple]:
    """Every file and symlink under `top` with its bytes, mode, size and mtime (the logs
    aside: every action is logged)."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not (Path(dirpath) == top and d == "logs")]
        for name in files:
            p = Path(dirpath) / name
            st = p.lstat()
            body = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(p).encode()
            out[str(p.relative_to(top))] = (st.st_mode, st.st_size, st.st_mtime_ns, body)
    return out


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, as another user at another terminal runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _type_target(pilot, screen: RestoreScreen, target: Path) -> None:
    """The restore target typed into its field, from the keyboard."""
    field = screen.query_one("#target", Input)
    field.focus()
    await pilot.press("end", *["backspace"] * len(field.value))
    await type_text(pilot, str(target))
    await pilot.pause()
    assert field.value == str(target)


async def _open_restore(app: NexusApp, pilot, target: Path, *, first: bool = True):
    await pilot.press(*(["down"] if first else []), "r")
    await wait_for(pilot, lambda: isinstance(app.screen, RestoreScreen))
    screen = app.screen
    await _type_target(pilot, screen, target)
    return screen


async def test_every_destructive_action_asks_and_escape_changes_no_byte(
    tui_root: Path, seeded: dict
) -> None:
    data = seeded["data"]
    (data / "mine.txt").write_text("made after the backups\n")
    before_root, before_data = state(tui_root), state(data)
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)

        async def asked_then(key: str, title: str) -> None:
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            confirm = app.screen
            assert confirm.title_text == title
            await pilot.press(key)
            await wait_for(pilot, lambda: app.screen is not confirm)
            await settle(pilot)

        for answer in ("escape", "enter", "n"):  # enter: a dangerous question focuses No
            await pilot.press("down", "d")
            await asked_then(answer, "Delete backup")
            await pilot.press("X")
            await asked_then(answer, "Delete project")
        assert app.screen is app.main

        # a restore over the live directory, deleting what the backup does not hold
        screen = await _open_restore(app, pilot, data)
        screen.query_one("#delete-extra", Tick).value = True
        await pilot.press("ctrl+s")
        await asked_then("escape", "Restore?")
        assert app.screen is screen  # back at the dialog, nothing run
        assert screen.op is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main)

        # retention that would remove a backup: the policy is not even stored
        await pilot.press("P")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyScreen))
        await settle(pilot)
        await type_text(pilot, "1")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await asked_then("escape", "Apply retention")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main)
        await settle(pilot)
        assert not app.operations.running
    assert state(tui_root) == before_root
    assert state(data) == before_data
    assert await BackupManager(tui_root).policy("proj") is None


async def test_a_backup_deleted_by_another_process_after_the_preview_restores_nothing(
    tui_root: Path, seeded: dict, tmp_path: Path
) -> None:
    """The preview is shown, the question asked; meanwhile `nexus-backup delete` (a real
    process) deletes that backup; the answer yes writes nothing and deletes nothing in the
    target (delete-extra on), and says why in one line."""
    target = tmp_path / "target"
    shutil.copytree(seeded["data"], target)
    (target / "mine.txt").write_text("only in the target\n")
    before = state(target)
    doomed = seeded["first"].id
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_restore(app, pilot, target)
        screen.query_one("#delete-extra", Tick).value = True
        await pilot.press("ctrl+d")
        await settle(pilot)
        assert screen.preview is not None and screen.preview.counts.destructive
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        body = plain(app.screen.query_one("#confirm-body"))
        assert "OVERWRITTEN" in body and "mine.txt" in body
        gone = cli(tui_root, "delete", "proj", doomed)
        assert gone.returncode == 0, gone.stderr
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.op is not None and screen.op.state != "running")
        await settle(pilot)
        assert screen.op.state == "failed", screen.op.state
        said = [n for n in notes(app) if doomed in n or "not found" in n.lower()]
        assert said and all("Traceback" not in n and "\n" not in n.strip() for n in said), said
    assert state(target) == before
    assert not [p for p in target.rglob("*") if p.name.startswith(TMP_PREFIX)]
    assert not (tui_root / "backups" / "proj" / f"backup_{doomed}").exists()


@pytest.mark.parametrize("overwrite", ["if-changed", "always"])
async def test_the_restore_does_no_more_than_its_preview_named(
    tui_root: Path, seeded: dict, tmp_path: Path, overwrite: str
) -> None:
    """Over a target holding a changed file, a file the backup lacks, a directory where the
    backup has a file and a symlink where it has a directory, with delete-extra: every path
    whose bytes or kind changed on disk is one the preview named, with the same counts the
    restore then reports (I5)."""
    target = tmp_path / "target"
    shutil.copytree(seeded["data"], target)
    (target / "extra.txt").write_text("only in the target\n")
    (target / "a.txt").unlink()
    (target / "a.txt").mkdir()
    (target / "a.txt" / "inside").write_text("x")
    shutil.rmtree(target / "sub" / "deep")
    (target / "sub" / "deep").symlink_to(tmp_path)
    (tmp_path / "outside.txt").write_text("never touched\n")
    outside = (tmp_path / "outside.txt").read_bytes()
    before = state(target)
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_restore(app, pilot, target)
        screen.query_one("#delete-extra", Tick).value = True
        screen.query_one("#overwrite", Select).value = overwrite
        await pilot.press("ctrl+d")
        await settle(pilot)
        preview = screen.preview
        assert preview is not None and not preview.changes_truncated
        named = {c.path for c in preview.changes if c.action != "unchanged"}
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.op is not None and screen.op.state != "running")
        await settle(pilot)
        result = screen.op.result
        assert screen.op.state == "done", notes(app)
    after = state(target)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}

    def covered(path: str) -> bool:
        parts = Path(path).parts
        return any(str(Path(*parts[: i + 1])) in named for i in range(len(parts)))

    assert changed and all(covered(p) for p in changed), (sorted(changed), sorted(named))
    assert result.counts == preview.counts
    assert (tmp_path / "outside.txt").read_bytes() == outside
    if overwrite == "always":  # what stood in the way is replaced, as the preview said
        assert (target / "a.txt").read_bytes() == seeded["original_a"]
        assert (target / "sub" / "deep" / "c.bin").is_file()
    else:  # left as it is, as the preview said ("skip: a directory is there")
        assert (target / "a.txt" / "inside").read_text() == "x"
        assert (target / "sub" / "deep").is_symlink()
    assert not (target / "extra.txt").exists()


async def test_a_project_backed_up_by_another_process_after_the_question_is_not_deleted(
    tui_root: Path, seeded: dict
) -> None:
    """`X` names 2 backups; before the answer, `nexus-backup create` (a real process) makes a
    third: yes deletes nothing (the count asked about is no longer the count) and says so."""
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("X")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "2 backups" in plain(app.screen.query_one("#confirm-body"))
        made = cli(tui_root, "create", "proj", str(seeded["data"]))
        assert made.returncode == 0, made.stderr
        before = state(tui_root)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is app.main)
        await settle(pilot)
        await wait_for(pilot, lambda: not app.operations.running)
        said = [n for n in notes(app) if "look again" in n]
        assert said, notes(app)
    assert state(tui_root) == before
    assert len(await BackupManager(tui_root).list("proj")) == 3


async def test_a_backup_deleted_by_another_process_before_the_answer_deletes_nothing_else(
    tui_root: Path, seeded: dict
) -> None:
    """`d` on the first backup; before the answer another process deletes it: yes leaves the
    other backup whole and restorable, and the app stays usable."""
    doomed, kept = seeded["first"].id, seeded["second"].id
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert doomed in plain(app.screen.query_one("#confirm-body"))
        gone = cli(tui_root, "delete", "proj", doomed)
        assert gone.returncode == 0, gone.stderr
        before = state(tui_root)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is app.main)
        await settle(pilot)
        await wait_for(pilot, lambda: not app.operations.running)
        await settle(pilot)
        assert all("Traceback" not in n for n in notes(app))
        assert [b.id for b in app.main.table.backups] == [kept]
    after = state(tui_root)
    assert {p: v for p, v in after.items() if "/locks/" not in p} == {
        p: v for p, v in before.items() if "/locks/" not in p
    }
    verified = cli(tui_root, "verify", "proj", kept)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_retention_confirmed_for_some_backups_never_deletes_one_it_showed_kept(
    tmp_path: Path,
) -> None:
    """Keep the last 2, grace 0: the question names 2 backups to delete for good. Before the
    answer `nexus-backup create` (a real process) makes a new one, so the same rule now
    removes a third, one the screen marked "keep". Yes must not delete it: the count asked
    about is no longer the count (as a project delete refuses), and nothing changes."""
    root, data = tmp_path / "root", tmp_path / "data"
    ids = await _four_daily_backups(root, data)
    app = NexusApp(root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("P")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyScreen))
        screen = app.screen
        await settle(pilot)
        await type_text(pilot, "2")  # last 2
        screen.query_one("#f-grace_hours", Input).value = "0"
        await settle(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "delete 2 backups for good" in plain(app.screen.query_one("#confirm-body"))
        (data / "day.txt").write_text("today\n")
        made = cli(root, "create", "web", str(data))
        assert made.returncode == 0, made.stderr
        before = state(root / "backups")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is app.main)
        await settle(pilot)
        await wait_for(pilot, lambda: not app.operations.running)
        await settle(pilot)
        said = [n for n in notes(app) if "look again" in n]
        assert len(said) == 1 and "\n" not in said[0].strip(), notes(app)
    listed = [m.id for m in await BackupManager(root).list("web")]
    assert ids[1] in listed, "a backup the confirmation showed as kept was deleted for good"
    assert set(ids) <= set(listed) and len(listed) == 5
    assert state(root / "backups") == before
    assert await BackupManager(root).policy("web") is None  # nothing saved either


async def _four_daily_backups(root: Path, data: Path) -> list[str]:
    """Four backups a day apart, the newest a day old; their ids newest first."""
    from datetime import UTC, datetime, timedelta

    from core.models import CreateRequest

    data.mkdir()
    mgr = BackupManager(root)
    await mgr.create_project("web", str(data))
    now = datetime.now(UTC)
    ids = []
    for back in range(4, 0, -1):
        (data / "day.txt").write_text(f"day {back}\n")
        req = CreateRequest(
            project_id="web", data_dir=str(data), created_at=now - timedelta(days=back)
        )
        ids.append((await mgr.create(req)).id)
    return ids[::-1]


async def test_retention_applied_as_fast_as_one_types_never_crashes_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`2`, ctrl+s, y typed in one go: the screen's space estimate (a dry run started 0.4 s
    after the last key) must not outlive the screen it writes to (it raised NoMatches on the
    dismissed screen: WorkerFailed, and the whole app exited)."""
    import core.ops.forget

    root = tmp_path / "root"
    ids = await _four_daily_backups(root, tmp_path / "data")
    real = core.ops.forget.space_freed

    def slow_disk(*args, **kw):  # type: ignore[no-untyped-def]
        time.sleep(1.0)  # reading the kept manifests off a slow disk: the real engine, slowed
        return real(*args, **kw)

    monkeypatch.setattr(core.ops.forget, "space_freed", slow_disk)
    app = NexusApp(root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("P")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyScreen))
        await settle(pilot)
        await type_text(pilot, "2")
        await pilot.pause(0.45)  # the estimate starts
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await pilot.pause(1.0)
        await settle(pilot)
        await wait_for(pilot, lambda: not app.operations.running)
        assert app.is_running and app.screen is app.main
    assert [m.id for m in await BackupManager(root).list("web")] == ids[:2]


async def test_an_undo_whose_checkpoint_another_process_deleted_changes_nothing(
    tui_root: Path, seeded: dict
) -> None:
    """A restore over the live directory (its checkpoint taken), then `nexus-backup delete`
    of that checkpoint from another terminal, then ctrl+z and y: the undo has nothing to put
    back and must not touch the directory as the restore left it."""
    data = seeded["data"]
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_restore(app, pilot, data)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.op is not None and screen.op.state != "running")
        await settle(pilot)
        checkpoint = screen.op.result.checkpoint_id
        assert checkpoint and (data / "a.txt").read_bytes() == seeded["original_a"]
        gone = cli(tui_root, "delete", "proj", checkpoint)
        assert gone.returncode == 0, gone.stderr
        restored = state(data)
        await pilot.press("ctrl+z")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is screen)
        await settle(pilot)
        await wait_for(pilot, lambda: not app.operations.running)
        await settle(pilot)
        assert all("Traceback" not in n for n in notes(app)), notes(app)
        assert app.is_running
    assert state(data) == restored
    assert not [p for p in data.rglob("*") if p.name.startswith(TMP_PREFIX)]


async def test_a_project_renamed_by_another_process_before_the_answer_is_not_deleted(
    tui_root: Path, seeded: dict
) -> None:
    """`X` asks about `proj`; before the answer `nexus-backup rename-project proj site` runs
    in another terminal: yes deletes nothing, `site` keeps both backups."""
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("X")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        moved = cli(tui_root, "rename-project", "proj", "site")
        assert moved.returncode == 0, moved.stderr
        before = state(tui_root)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is app.main)
        await settle(pilot)
        await wait_for(pilot, lambda: not app.operations.running)
        await settle(pilot)
        assert all("Traceback" not in n for n in notes(app)), notes(app)
    after = state(tui_root)
    assert {p: v for p, v in after.items() if "/locks/" not in p} == {
        p: v for p, v in before.items() if "/locks/" not in p
    }
    assert len(await BackupManager(tui_root).list("site")) == 2
