"""The issue's "done when", as a new user would do it: 80x24, keyboard only, real core."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input
from tui_helpers import notes, plain, settle, type_text, wait_for

from core.models import BackupStatus
from tui.app import NexusApp
from tui.screens.browse import BrowseScreen, FileTree
from tui.screens.confirm import ConfirmScreen
from tui.screens.new_backup import NewBackupScreen
from tui.screens.new_project import NewProjectScreen
from tui.screens.restore import RestoreScreen


async def test_new_user_flow_at_80x24(tui_root: Path, tui_data: Path, tmp_path: Path) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        main = app.main
        assert main.projects.projects == []

        # create a project from a directory
        await pilot.press("N")
        assert isinstance(app.screen, NewProjectScreen)
        await type_text(pilot, str(tui_data))
        assert app.screen.query_one("#project-id", Input).value == "data"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is main
        assert [p.project_id for p in main.projects.projects] == ["data"]
        assert (tui_root / "backups" / "data" / "project.json").exists()

        # back it up: the form remembers the directory
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewBackupScreen)
        assert form.query_one("#data-dir", Input).value == str(tui_data)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.op is not None and form.op.state == "done"
        await pilot.press("escape")
        await settle(pilot)
        assert len(main.table.backups) == 1
        first = main.table.backups[0]
        assert first.status == BackupStatus.COMPLETED

        # change a file, back up again
        original = (tui_data / "a.txt").read_bytes()
        (tui_data / "a.txt").write_bytes(b"changed!\n")
        await pilot.press("n")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert len(main.table.backups) == 2
        assert main.table.shown[0].id != first.id  # newest first
        assert main.table.current.id == main.table.shown[0].id  # the new one is highlighted

        # restore one file of the first backup into a new directory
        await pilot.press("down")
        await settle(pilot)
        assert main.table.current.id == first.id
        await pilot.press("b")
        await settle(pilot)
        assert isinstance(app.screen, BrowseScreen)
        tree = app.screen.query_one(FileTree)
        await wait_for(
            pilot, lambda: any(n.data and n.data.path == "a.txt" for n in tree.root.children)
        )
        a_node = next(n for n in tree.root.children if n.data and n.data.path == "a.txt")
        tree.move_cursor(a_node)
        await pilot.press("space")
        assert app.screen.marked == {"a.txt"}
        await pilot.press("r")
        await settle(pilot)
        restore = app.screen
        assert isinstance(restore, RestoreScreen)
        assert restore.paths == ["a.txt"]
        target = Path(restore.query_one("#target", Input).value).expanduser()
        assert target.name == f"data.restore-{first.id}"
        assert not target.exists()
        await pilot.press("ctrl+s")  # preview first, then the confirmation
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert (target / "a.txt").read_bytes() == original
        assert not (target / "sub").exists()
        result = plain(restore.query_one("#result"))
        assert "1 file written" in result and "Verified" in result
        await pilot.press("escape")  # restore dialog
        await pilot.press("escape")  # browser
        await settle(pilot)
        assert app.screen is main

        # every step is in the log pane
        await pilot.press("4")
        await wait_for(pilot, lambda: any("restored" in line for line in main.log_tail.lines_text))
        text = "\n".join(main.log_tail.lines_text)
        assert "project created" in text
        assert "full backup of" in text
        assert "restore to" in text

        # filter the table
        await pilot.press("2", "slash")
        await type_text(pilot, "type:inc")
        assert [b.id for b in main.table.shown] == [main.table.backups[0].id]
        assert "type=incremental" in app.screen.query_one("#table-area").border_subtitle
        await pilot.press("escape")
        assert len(main.table.shown) == 2

        # delete a backup: confirmation names it, and it is gone from disk
        await pilot.press("home")
        doomed = main.table.current
        await pilot.press("d")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert doomed.id in plain(confirm.query_one("#confirm-body"))
        await pilot.press("y")
        await settle(pilot)
        assert not (tui_root / "backups" / "data" / f"backup_{doomed.id}").exists()
        assert [b.id for b in main.table.backups] == [first.id]
        assert not any("failed" in n.lower() for n in notes(app)), notes(app)
