"""Every action of the issue against the real core, asserting on what is on disk."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from textual.widgets import Input
from tui_helpers import notes, plain, settle, type_text, wait_for

from core.manager import BackupManager
from core.models import BackupStatus, BackupType, CreateRequest
from tui.app import NexusApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.new_backup import NewBackupScreen
from tui.screens.pick import PickScreen
from tui.screens.restore import RestoreScreen
from tui.validation import expand
from tui.widgets.progress_panel import OperationProgress, ProgressPanel
from tui.widgets.tick import Tick


async def test_table_lists_newest_first_with_status_words(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.main.table
        assert [b.id for b in table.shown] == [seeded["second"].id, seeded["first"].id]
        row = table.get_row_at(0)
        assert "completed" in str(row[1])  # words, not only colour
        assert app.main.detail.meta.id == seeded["second"].id
        detail = plain(app.main.query_one("#detail-body"))
        for field in ("Checksum", "Made from", "Speed", "of data", "Last verify", "Completed"):
            assert field in detail
        assert seeded["first"].id in detail  # what it was made from


async def test_home_end_and_vim_keys_move_between_rows(tui_root: Path, seeded: dict) -> None:
    """At 80x24 over SSH: home/end and g/G jump to the first and last backup, j/k step."""
    newest, oldest = seeded["second"].id, seeded["first"].id
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.main.table
        for keys, want in (
            (["end"], oldest),
            (["home"], newest),
            (["G"], oldest),
            (["g"], newest),
            (["j"], oldest),
            (["k"], newest),
        ):
            await pilot.press(*keys)
            await settle(pilot)
            assert app.main.current_backup is not None, keys
            assert app.main.current_backup.id == want, keys
        assert table.scroll_x == 0  # never sideways


async def test_vim_keys_in_the_projects_pane(tui_root: Path, seeded: dict) -> None:
    await BackupManager(tui_root).create_project("zeta", str(seeded["data"]))
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        first = app.main.current_project
        assert first is not None
        for key in ("j", "k", "G", "g"):
            await pilot.press(key)
            await settle(pilot)
            now = app.main.current_project
            assert now is not None
            assert (now.project_id == first.project_id) == (key in ("k", "g")), key


async def test_sort_by_column_and_back(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.main.table
        newest_first = [b.id for b in table.shown]
        await pilot.press("S")  # reverse the date sort
        assert [b.id for b in table.shown] == newest_first[::-1]
        await pilot.press("s")  # next column: status
        assert table.sort_key == "status"
        table.sort_by("created", True)
        assert [b.id for b in table.shown] == newest_first


async def test_filter_narrows_as_you_type_and_escape_clears(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.main.table
        await pilot.press("slash")
        await type_text(pilot, "tag:env")
        assert [b.id for b in table.shown] == [seeded["first"].id]
        await pilot.press("backspace", "backspace", "backspace", "backspace", "backspace")
        await pilot.press("backspace", "backspace")
        await type_text(pilot, "status:fail")
        assert table.shown == []
        assert "status=failed" in app.main.query_one("#table-area").border_subtitle
        await pilot.press("enter")  # keep the filter, back to the table
        assert table.has_focus and table.shown == []
        await pilot.press("escape")
        assert len(table.shown) == 2
        await pilot.press("slash")
        await type_text(pilot, "type:bogus")
        assert "no type 'bogus'" in plain(app.main.query_one("#filter-hint"))
        assert len(table.shown) == 2  # a token that does not parse is not applied


async def test_new_backup_with_tags_name_and_type(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewBackupScreen)
        assert form.query_one("#data-dir", Input).value == str(seeded["data"])
        form.query_one("#type").value = BackupType.CHECKPOINT
        form.query_one("#tags", Input).focus()
        await type_text(pilot, "env=test, ticket=T-1")
        form.query_one("#name", Input).focus()
        await type_text(pilot, "before-upgrade")
        await pilot.press("ctrl+s")
        await settle(pilot)
        meta = form.op.result
        assert meta.status == BackupStatus.COMPLETED
        assert meta.type == BackupType.CHECKPOINT
        assert meta.tags == {"env": "test", "ticket": "T-1", "name": "before-upgrade"}
        on_disk = tui_root / "backups" / "proj" / f"backup_{meta.id}" / "metadata.json"
        assert '"before-upgrade"' in on_disk.read_text()
        assert "completed" in plain(form.query_one("#result"))


async def test_new_backup_validates_directory_as_you_type(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        form = app.screen
        field = form.query_one("#data-dir", Input)
        field.focus()
        await pilot.press("end")
        await type_text(pilot, "-nope")
        help_text = plain(form.query_one("#data-dir-help"))
        assert "does not exist" in help_text
        await pilot.press("ctrl+s")
        assert form.op is None  # not started
        await pilot.press(*["backspace"] * 5)
        assert "entries" in plain(form.query_one("#data-dir-help"))


async def test_cancel_a_running_backup_marks_it_failed(
    tui_root: Path, seeded: dict, big_data: Path
) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        form = app.screen
        field = form.query_one("#data-dir", Input)
        field.value = str(big_data)
        await pilot.press("ctrl+s", "y")  # yes, back up this other directory
        op = form.op
        await wait_for(pilot, lambda: op.progress is not None and op.backup_id is not None)
        assert form.query_one(OperationProgress).op is op
        await pilot.press("c")
        await wait_for(pilot, lambda: not op.running)
        await settle(pilot)
        assert op.state == "cancelled"
        meta = await BackupManager(tui_root).info("proj", op.backup_id)
        assert meta.metadata.status == BackupStatus.FAILED
        assert meta.metadata.error_message == "cancelled"
        await pilot.press("escape")
        await settle(pilot)
        failed = app.main.table.find(op.backup_id)
        assert failed is not None and failed.status == BackupStatus.FAILED
        assert "✗ failed" in str(app.main.table.get_row(op.backup_id)[1])


async def test_restore_whole_backup_into_new_directory(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down")  # the first (full) backup
        await settle(pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RestoreScreen)
        target = Path(screen.query_one("#target", Input).value).expanduser()
        assert target.parent == seeded["data"].parent  # beside the original, not over it
        await pilot.press("ctrl+d")  # dry-run preview
        await settle(pilot)
        assert screen.preview is not None and screen.preview.dry_run
        assert not target.exists()  # a preview writes nothing
        # (its figures: test_tui_safety.py::test_preview_of_a_small_restore_counts_exactly)
        await pilot.press("ctrl+s")
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        data = seeded["data"]
        assert (target / "a.txt").read_bytes() == seeded["original_a"]
        assert (target / "sub" / "b.txt").read_bytes() == (data / "sub" / "b.txt").read_bytes()
        c = (data / "sub" / "deep" / "c.bin").read_bytes()
        assert (target / "sub" / "deep" / "c.bin").read_bytes() == c
        assert any(n.startswith("Restore completed") for n in notes(app))


async def test_restore_over_existing_names_overwrites_and_offers_undo(
    tui_root: Path, seeded: dict
) -> None:
    data = seeded["data"]
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down")  # the first backup, whose a.txt differs from the live one
        await settle(pilot)
        await pilot.press("r")
        screen = app.screen
        screen.query_one("#target", Input).value = str(data)
        await pilot.pause()
        assert "live data directory" in plain(screen.query_one("#target-help"))
        await pilot.press("ctrl+s")
        await settle(pilot)
        body = plain(app.screen.query_one("#confirm-body"))
        assert "OVERWRITTEN" in body and "a.txt" in body  # the count: see test_tui_safety.py
        assert "checkpoint" in body
        await pilot.press("y")
        await settle(pilot)
        assert (data / "a.txt").read_bytes() == seeded["original_a"]
        result = screen.op.result
        assert result.checkpoint_id
        text = plain(screen.query_one("#result"))
        assert result.checkpoint_id in text and "ctrl+z to undo" in text
        checkpoint = tui_root / "backups" / "proj" / f"backup_{result.checkpoint_id}"
        assert checkpoint.is_dir()
        await pilot.press("escape")
        await settle(pilot)
        assert app.main.table.find(result.checkpoint_id).type == BackupType.CHECKPOINT


async def test_ctrl_z_undoes_the_restore_writing_back_only_what_it_changed(
    tui_root: Path, seeded: dict
) -> None:
    """The live directory as it was before the restore, byte for byte, after ctrl+z and y;
    a file the restore did not change is not written again (its inode and mtime stay)."""
    data = seeded["data"]
    (data / "mine.txt").write_text("written after the backups")
    before = {p.relative_to(data): p.read_bytes() for p in data.rglob("*") if p.is_file()}
    untouched = (data / "sub" / "b.txt").stat()
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down")  # the first backup: its a.txt differs from the live one
        await settle(pilot)
        await pilot.press("r")
        screen = app.screen
        screen.query_one("#target", Input).value = str(data)
        screen.query_one("#delete-extra", Tick).value = True
        await pilot.pause()
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert (data / "a.txt").read_bytes() == seeded["original_a"]
        assert not (data / "mine.txt").exists()
        await pilot.press("ctrl+z")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "back as it was" in plain(app.screen.query_one("#confirm-body"))
        await pilot.press("y")
        await wait_for(pilot, lambda: "Undone" in plain(screen.query_one("#result")))
        after = {p.relative_to(data): p.read_bytes() for p in data.rglob("*") if p.is_file()}
        assert after == before
        again = (data / "sub" / "b.txt").stat()
        assert (again.st_ino, again.st_mtime_ns) == (untouched.st_ino, untouched.st_mtime_ns)


async def test_verify_shows_result_in_detail(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "never verified" in plain(app.main.query_one("#detail-body"))
        await pilot.press("v")
        await settle(pilot)
        assert any(n.startswith("Verify: OK") for n in notes(app))
        await wait_for(pilot, lambda: app.main.detail.info and app.main.detail.info.last_verify)
        assert "✓ ok" in plain(app.main.query_one("#detail-body"))


async def test_delete_confirms_and_removes_from_disk(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    doomed = seeded["first"]  # the parent: its child stays restorable
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down", "d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # answering no changes nothing
        assert (tui_root / "backups" / "proj" / f"backup_{doomed.id}").exists()
        await pilot.press("d", "y")
        await settle(pilot)
        assert not (tui_root / "backups" / "proj" / f"backup_{doomed.id}").exists()
        assert [b.id for b in app.main.table.backups] == [seeded["second"].id]
        # the child still restores completely
        await pilot.press("r")
        target = Path(app.screen.query_one("#target", Input).value).expanduser()
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert (target / "sub" / "b.txt").read_bytes() == b"bravo\n" * 100


async def test_new_project_rejects_bad_ids_and_duplicates(
    tui_root: Path, seeded: dict, tmp_path: Path
) -> None:
    other = tmp_path / "other dir"
    other.mkdir()
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("N")
        screen = app.screen
        screen.query_one("#project-dir", Input).value = str(other)
        await pilot.pause()
        assert screen.query_one("#project-id", Input).value == "other-dir"
        screen.query_one("#project-id", Input).value = "proj"
        await pilot.pause()
        assert "already exists" in plain(screen.query_one("#project-id-help"))
        await pilot.press("ctrl+s")
        assert app.screen is screen
        screen.query_one("#project-id", Input).value = "other"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert [p.project_id for p in app.main.projects.projects] == ["other", "proj"]
        assert app.main.project_id == "other"


async def test_refreshes_when_another_process_creates_and_deletes(
    tui_root: Path, seeded: dict
) -> None:
    app = NexusApp(tui_root, poll_interval=0.1)
    cli = [sys.executable, "-m", "cli", "--root", str(tui_root)]
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert len(app.main.table.backups) == 2
        proc = await asyncio.create_subprocess_exec(
            *cli,
            "create",
            "proj",
            str(seeded["data"]),
            "--type",
            "full",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert await proc.wait() == 0, (await proc.stderr.read()).decode()
        await wait_for(pilot, lambda: len(app.main.table.backups) == 3)
        # the projects pane reloads its figures apart from the table: it follows, not together
        await wait_for(pilot, lambda: app.main.projects.summary("proj").backups == 3)
        proc = await asyncio.create_subprocess_exec(
            *cli, "delete", "proj", seeded["first"].id, stdout=subprocess.DEVNULL
        )
        assert await proc.wait() == 0
        await wait_for(pilot, lambda: len(app.main.table.backups) == 2)
        await wait_for(pilot, lambda: app.main.projects.summary("proj").backups == 2)
        # a project another process makes appears; the others keep their figures
        proc = await asyncio.create_subprocess_exec(
            *cli, "create", "other", str(seeded["data"]), stdout=subprocess.DEVNULL
        )
        assert await proc.wait() == 0
        await wait_for(pilot, lambda: app.main.projects.summary("other") is not None)
        await wait_for(pilot, lambda: app.main.projects.summary("other").backups == 1)
        assert [p.project_id for p in app.main.projects.projects] == ["other", "proj"]
        assert app.main.projects.summary("proj").backups == 2
        # and the log pane shows what the other process logged
        await pilot.press("4")
        await wait_for(
            pilot, lambda: any("backup deleted" in line for line in app.main.log_tail.lines_text)
        )


async def test_errors_are_notified_and_logged_and_app_stays_usable(
    tui_root: Path, seeded: dict
) -> None:
    import shutil

    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)
        gone = seeded["first"].id
        shutil.rmtree(tui_root / "backups" / "proj" / f"backup_{gone}")  # behind the app's back
        await pilot.press("v")
        await settle(pilot)
        errors = [n for n in notes(app) if "failed" in n]
        assert errors and "not found" in errors[0]
        assert "Traceback" not in errors[0]
        op = next(iter(app.operations))
        assert op.state == "failed"
        # the app goes on: another action works
        await pilot.press("home", "v")
        await settle(pilot)
        assert any(n.startswith("Verify: OK") for n in notes(app))


async def test_several_operations_at_once_and_quit_names_them(
    tui_root: Path, seeded: dict, big_data: Path
) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        ops = []
        for kind in (BackupType.FULL, BackupType.SNAPSHOT):
            await pilot.press("n")
            app.screen.query_one("#data-dir", Input).value = str(big_data)
            app.screen.query_one("#type").value = kind
            form = app.screen
            await pilot.press("ctrl+s", "y")  # yes, back up this other directory
            ops.append(form.op)
            await pilot.press("escape")  # hide the form: the backup goes on
            assert app.screen is app.main
        await wait_for(pilot, lambda: all(op.progress for op in ops))
        panel = app.main.query_one(ProgressPanel)
        assert panel.display
        rows = {row.op.id for row in panel.query(OperationProgress)}
        assert rows == {op.id for op in ops}  # each with its own progress
        await pilot.press("q")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        body = plain(confirm.query_one("#confirm-body"))
        assert "backup proj (full)" in body and "backup proj (snapshot)" in body
        await pilot.press("n")  # stay
        assert app.is_running and all(op.running for op in ops), (
            notes(app),
            [(o.state, o.error) for o in ops],
        )
        await pilot.press("c")
        assert isinstance(app.screen, PickScreen)
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: not ops[0].running)
        await pilot.press("c")  # one left: straight to the confirmation
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert [op.state for op in ops] == ["cancelled", "cancelled"]
        assert not panel.display


async def test_quit_with_a_running_backup_cancels_it(
    tui_root: Path, seeded: dict, big_data: Path
) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        app.screen.query_one("#data-dir", Input).value = str(big_data)
        form = app.screen
        await pilot.press("ctrl+s", "y")  # yes, back up this other directory
        op = form.op
        await wait_for(pilot, lambda: op.backup_id is not None)
        await pilot.press("escape", "q")
        assert "Still running" in plain(app.screen.query_one("#confirm-body"))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.return_code is not None)
    meta = await BackupManager(tui_root).info("proj", op.backup_id)
    assert meta.metadata.status == BackupStatus.FAILED
    assert meta.metadata.error_message == "cancelled"


async def test_command_palette_runs_actions(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await type_text(pilot, "verify")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert any(n.startswith("Verify: OK") for n in notes(app))


async def test_log_tail_follows_external_writes_and_filters_levels(
    tui_root: Path, seeded: dict
) -> None:
    from core.logger import BackupLogger

    app = NexusApp(tui_root)
    async with app.run_test(size=(130, 36)) as pilot:
        await settle(pilot)
        log = app.main.log_tail
        other = BackupLogger(tui_root)  # as a cron job's process would
        other.warning("proj", "cron", "disk almost full")
        other.info("proj", "cron", "nightly run done")
        await wait_for(pilot, lambda: any("nightly run done" in line for line in log.lines_text))
        await pilot.press("4", "L", "L")  # ≥ WARNING
        assert any("disk almost full" in line for line in log.lines_text)
        assert not any("nightly run done" in line for line in log.lines_text)
        assert "≥ WARNING" in log.border_subtitle
        for i in range(3000):
            other.debug("proj", "spam", f"line {i}")
        await pilot.press("L", "L")  # back to all levels
        await wait_for(pilot, lambda: any("line 2999" in line for line in log.lines_text))
        assert len(log.lines) <= 2000  # bounded


async def test_browse_is_lazy_and_restores_marked_folder(tui_root: Path, seeded: dict) -> None:
    from tui.screens.browse import BrowseScreen, FileTree

    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BrowseScreen)
        tree = screen.query_one(FileTree)
        sub = next(n for n in tree.root.children if n.data and n.data.path == "sub")
        assert [c.data.path for c in sub.children if c.data] == []  # not loaded yet
        tree.move_cursor(sub)
        await pilot.press("enter")
        await settle(pilot)
        assert {c.data.path for c in sub.children if c.data} == {"sub/deep", "sub/b.txt"}
        await pilot.press("space")  # mark the folder
        await pilot.press("r")
        restore = app.screen
        target = Path(restore.query_one("#target", Input).value).expanduser()
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert (target / "sub" / "b.txt").exists()
        assert (target / "sub" / "deep" / "c.bin").exists()
        assert not (target / "a.txt").exists()


async def test_project_whose_last_backup_failed_stands_out(tui_root: Path, seeded: dict) -> None:
    from core.repo.repository import Repository

    mgr = BackupManager(tui_root)
    await mgr.create_project("other", str(seeded["data"]))
    meta = await mgr.create(CreateRequest(project_id="other", data_dir=str(seeded["data"])))
    meta.status, meta.error_message = BackupStatus.FAILED, "disk full"
    Repository(mgr.root, "other").write_metadata(meta)
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        option = app.main.projects.get_option("other")
        rendered = app.console.render_str("")  # noqa: F841 (ensures a console exists)
        from rich.console import Console

        console = Console(width=40, record=True, color_system=None)
        console.print(option.prompt)
        text = console.export_text()
        assert "✗ other" in text and "failed" in text


async def test_startup_heap_is_frozen_while_running_and_released_on_exit(
    tui_root: Path, seeded: dict
) -> None:
    """The app freezes its startup heap (no full-collection stalls later) and hands it back
    when it exits, so a process that runs the app and goes on keeps no frozen objects."""
    import gc

    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: gc.get_freeze_count() > 0)
        assert app.main.table.row_count == 2  # and the app works on
    assert gc.get_freeze_count() == 0


async def test_empty_table_says_what_to_do_next(tui_root: Path, tui_data: Path) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        body = lambda: plain(app.main.query_one("#detail-body"))  # noqa: E731
        assert "No projects yet" in body() and "Press N" in body()
        await BackupManager(tui_root).create_project("proj", str(tui_data))
        app.main.reload()
        await wait_for(pilot, lambda: "No backups of proj yet" in body())
        assert str(tui_data) in body()  # the directory n would back up
        await BackupManager(tui_root).create(
            CreateRequest(project_id="proj", data_dir=str(tui_data))
        )
        app.main.reload()
        await wait_for(pilot, lambda: app.main.table.row_count == 1)
        await pilot.press("2", "slash")
        await type_text(pilot, "type:snap")
        await wait_for(pilot, lambda: "No backup matches the filter" in body())


async def test_restore_target_picked_from_a_directory_tree(
    tui_root: Path, seeded: dict, tmp_path: Path
) -> None:
    """ctrl+o opens a tree of directories (no files) on the nearest existing one; arrows and
    backspace move, ctrl+s chooses, and the restore lands in the chosen directory."""
    from tui.screens.pick_directory import DirectoryPickScreen

    places = tmp_path / "places"
    (places / "alpha").mkdir(parents=True)
    (places / "beta").mkdir()
    (places / "a-file.txt").write_text("not a directory\n")
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        restore = app.screen
        assert isinstance(restore, RestoreScreen)
        restore.query_one("#target", Input).value = str(places / "not-yet")
        await pilot.press("ctrl+o")
        picker = app.screen
        assert isinstance(picker, DirectoryPickScreen)
        tree = picker.tree
        await wait_for(pilot, lambda: len(tree.root.children) == 2)
        assert Path(tree.path) == places  # the nearest existing directory
        assert [n.data.path.name for n in tree.root.children] == ["alpha", "beta"]  # no files
        await pilot.press("backspace")  # up to the parent, the cursor on where it was
        await wait_for(pilot, lambda: Path(tree.path) == tmp_path and picker.highlighted == places)
        await pilot.press("up", "down")  # data, places (beside the app's root)
        assert picker.highlighted == places
        node = tree.cursor_node
        await pilot.press("enter")  # open places again
        await wait_for(pilot, lambda: len(node.children) == 2)
        await pilot.press("down", "down")  # alpha, beta
        assert picker.highlighted == places / "beta"
        await pilot.press("ctrl+s")
        assert app.screen is restore
        assert expand(restore.query_one("#target", Input).value) == places / "beta"
        await pilot.press("ctrl+s")  # preview, then the confirmation
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert (places / "beta" / "a.txt").read_bytes() == (seeded["data"] / "a.txt").read_bytes()
        assert not any((places / "alpha").iterdir())


async def test_a_long_table_shows_its_first_rows_and_says_so(
    tui_root: Path, seeded: dict, monkeypatch
) -> None:
    """Past MAX_ROWS the table shows the first rows of the sorted list, and the border says
    how many match; the filter reaches the others."""
    from tui.widgets.backups_table import BackupTable

    monkeypatch.setattr(BackupTable, "MAX_ROWS", 1)
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.main.table
        area = app.main.query_one("#table-area")
        assert [b.id for b in table.shown] == [seeded["second"].id]  # the newest
        assert "first 1 of 2 shown" in area.border_subtitle
        await pilot.press("2", "slash")
        await type_text(pilot, "type:full")
        assert [b.id for b in table.shown] == [seeded["first"].id]
        assert "shown" not in area.border_subtitle


async def test_a_key_typed_before_its_value_leaves_the_table_as_it_was(
    tui_root: Path, seeded: dict
) -> None:
    """`status:` is not yet a filter; for that keystroke the table keeps its rows instead of
    bringing every backup back (which, on a long table, is also the slowest keystroke)."""
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.main.table
        await pilot.press("slash")
        await type_text(pilot, "tag:env")
        assert [b.id for b in table.shown] == [seeded["first"].id]
        await type_text(pilot, " status")
        assert table.shown == []  # the free text 'status' is in no backup
        await type_text(pilot, ":")
        assert table.shown == []  # as it was; not both backups back for a keystroke
        await type_text(pilot, "c")
        assert [b.id for b in table.shown] == [seeded["first"].id]  # tag:env, completed


async def test_keys_in_one_burst_after_a_pane_switch_go_to_the_new_pane(
    tui_root: Path, seeded: dict
) -> None:
    """Over SSH `1` then `j` arrive in one read: the switch takes effect before `j`."""
    from textual import events

    await BackupManager(tui_root).create_project("zeta", str(seeded["data"]))
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.main.table
        assert app.focused is table
        for key, char in (("1", "1"), ("down", None)):  # as a driver posts them: no wait
            app.post_message(events.Key(key, char))
        await settle(pilot)
        assert app.focused is app.main.projects
        assert app.main.current_project is not None
        assert app.main.current_project.project_id == "zeta"
        await pilot.press("up")  # back to the project with backups, and let them load
        await settle(pilot)
        for key, char in (("2", "2"), ("end", None)):
            app.post_message(events.Key(key, char))
        await settle(pilot)
        assert app.focused is table
        assert app.main.current_backup is not None
        assert app.main.current_backup.id == seeded["first"].id  # the oldest: `end` went here


async def test_question_mark_lists_the_apps_own_keys_first_and_escape_closes(
    tui_root: Path, seeded: dict
) -> None:
    from tui.screens.keys import KeysScreen

    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        text = plain(app.screen.query_one("#keys-body"))
        for words in ("Restore the backup", "Delete the backup", "Sort", "Quit"):
            assert words in text, words
        assert text.index("Restore the backup") < text.index("Cursor up")  # ours first
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, KeysScreen)


async def test_every_width_shows_age_status_type_id_and_name_without_scrolling(
    tui_root: Path, seeded: dict
) -> None:
    """80x24 shows the short id (which every command takes) and the name; 200 the whole id;
    a cell that grows (`pending` to `completed`) widens its column instead of being cut."""
    from core.models import BackupStatus

    for size, whole in (((80, 24), False), ((120, 30), False), ((200, 40), True)):
        app = NexusApp(tui_root)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            table = app.main.table
            newest = seeded["second"]
            row = [str(c) for c in table.get_row(newest.id)]
            assert (newest.id in row) == whole, size
            assert newest.id in row or newest.id.rsplit("-", 1)[-1] in row, size
            assert table.virtual_size.width <= table.size.width, size  # nothing off to the side
            if size == (80, 24):
                pending = newest.model_copy(update={"status": BackupStatus.PENDING})
                table.show("proj", [pending, seeded["first"]], app.now())
                await settle(pilot)
                table.show("proj", [newest, seeded["first"]], app.now())
                await settle(pilot)
                status = table.columns["status"]  # type: ignore[index]
                assert status.get_render_width(table) >= len("✓ completed") + 2


async def test_delete_project_names_the_count_and_removes_it_from_disk(
    tui_root: Path, seeded: dict
) -> None:
    await BackupManager(tui_root).create_project("zeta", str(seeded["data"]))
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.main.project_id == "proj"
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmScreen)
        assert "2 backups" in plain(app.screen.query_one("#confirm-body"))
        await pilot.press("n")  # no: nothing changes
        await settle(pilot)
        assert (tui_root / "backups" / "proj" / "config.json").exists()
        await pilot.press("X", "y")
        await wait_for(pilot, lambda: not (tui_root / "backups" / "proj").exists())
        await settle(pilot)
        assert [p.project_id for p in app.main.projects.projects] == ["zeta"]
        assert (seeded["data"] / "a.txt").exists()  # the data directory is not touched


async def test_the_log_goes_back_a_day_and_wraps_long_lines(tui_root: Path, seeded: dict) -> None:
    """Yesterday's last lines above today's, under a day line; a long message is continued
    under the message column, never cut at the pane's edge."""
    from datetime import UTC, datetime, timedelta

    from core.logger import LogRecord

    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    logs = tui_root / "logs"
    record = LogRecord(yesterday, "ERROR", "proj", "create", None, "nightly backup failed")
    (logs / f"proj_{yesterday:%Y-%m-%d}.log").write_text(record.format() + "\n")
    mgr = BackupManager(tui_root)
    mgr.logger.warning("proj", "verify", "the end of this message must be seen: " + "x" * 120)
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        log = app.main.log_tail
        await wait_for(pilot, lambda: any("must be seen" in line for line in log.lines_text))
        await settle(pilot)
        text = log.lines_text
        assert any(f"── {yesterday:%a %Y-%m-%d} ──" in line for line in text)
        assert any("nightly backup failed" in line for line in text)
        assert text.index(next(t for t in text if "nightly" in t)) < text.index(
            next(t for t in text if "must be seen" in t)
        )
        width = log.scrollable_content_region.width
        assert all(len(line) <= width for line in text)
        assert "".join(line.strip() for line in text).count("x") >= 120  # all of it, wrapped


async def test_tab_goes_from_the_directory_to_the_project_id(tui_root: Path, seeded: dict) -> None:
    from tui.screens.new_project import NewProjectScreen

    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("N")
        assert isinstance(app.screen, NewProjectScreen)
        assert app.focused is not None and app.focused.id == "project-dir"
        await pilot.press("tab")
        assert app.focused is not None and app.focused.id == "project-id"


async def test_f2_renames_the_project_and_its_backups_follow(tui_root: Path, seeded: dict) -> None:
    from tui.screens.rename_project import RenameProjectScreen

    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f2")
        assert isinstance(app.screen, RenameProjectScreen)
        field = app.screen.query_one("#rename-to", Input)
        field.value = "a/b"
        await pilot.pause()
        assert "invalid" in plain(app.screen.query_one("#rename-help"))
        field.value = "renamed"
        await pilot.press("enter")
        await wait_for(pilot, lambda: (tui_root / "backups" / "renamed").is_dir())
        await wait_for(pilot, lambda: app.main.project_id == "renamed")
        await settle(pilot)
        assert [p.project_id for p in app.main.projects.projects] == ["renamed"]
        assert {b.id for b in app.main.table.backups} == {seeded["first"].id, seeded["second"].id}


async def test_toasts_sit_above_the_log_not_over_its_newest_lines(
    tui_root: Path, seeded: dict
) -> None:
    from textual.widgets._toast import Toast

    for size in ((80, 24), (130, 36)):
        app = NexusApp(tui_root)
        async with app.run_test(size=size, notifications=True) as pilot:
            await settle(pilot)
            app.notify("a result worth a toast", title="Done")
            await settle(pilot)
            toasts = list(app.main.query(Toast))
            assert toasts, size
            bottom = app.main.query_one("#bottom").region
            assert all(t.region.bottom <= bottom.y for t in toasts), size


async def test_projects_pane_labels_the_stored_size_in_the_tables_units(
    tui_root: Path, seeded: dict
) -> None:
    """The pane's figure is what the project takes in the repository, the table's the data
    each backup covers: one says "stored", both are in the same binary units (KiB, MiB)."""
    from core.display import size

    summary = next(p for p in await BackupManager(tui_root).projects() if p.project_id == "proj")
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        lines = str(app.main.projects.get_option("proj").prompt).splitlines()
        assert lines[1].strip() == "2 backups"
        assert lines[2].strip() == f"{size(summary.stored_bytes)} stored"
        assert "iB stored" in lines[2] or "Bytes stored" in lines[2]
