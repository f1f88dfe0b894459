"""The TUI's diff and find (issue 17) against the real core: `m` then `D` diffs two backups,
`D` alone diffs against the data directory, `r` restores the selected path through the
restore dialog, `f` finds a path and jumps to its backup; the browser shows folder sizes."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input, OptionList
from tui_helpers import settle, type_text

from core.models import BackupMetadata
from tui.app import NexusApp
from tui.screens.diff import DiffScreen, DiffTree, Folder, build_tree
from tui.screens.find import FindScreen
from tui.screens.restore import RestoreScreen


async def _select(pilot: Pilot, app: NexusApp, backup: BackupMetadata) -> None:
    app.main.table.select_backup(backup.id)
    await settle(pilot)
    assert app.main.current_backup is not None and app.main.current_backup.id == backup.id


async def test_mark_then_diff_shows_the_changes_and_restores_the_selected(
    tui_root: Path, seeded: dict
) -> None:
    first, second = seeded["first"], seeded["second"]
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await _select(pilot, app, second)  # marked first, the newer one: the order is by time
        await pilot.press("m")
        await _select(pilot, app, first)
        await pilot.press("D")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DiffScreen)
        assert (screen.old.id, screen.new.id if screen.new else None) == (first.id, second.id)
        result = screen.result
        assert result is not None
        assert [(c.path, c.status) for c in result.changes] == [("a.txt", "changed")]
        assert "content" in result.changes[0].changes
        tree = screen.query_one(DiffTree)
        leaf = next(n for n in tree.root.children if n.data is result.changes[0])
        tree.move_cursor(leaf)
        await pilot.press("r")
        await settle(pilot)
        restore = app.screen
        assert isinstance(restore, RestoreScreen)
        assert restore.backup.id == second.id and restore.paths == ["a.txt"]


async def test_diff_without_a_mark_is_against_the_data_directory(
    tui_root: Path, seeded: dict
) -> None:
    second, data = seeded["second"], seeded["data"]
    (data / "sub" / "new.txt").write_text("new since the backup\n")
    (data / "a.txt").unlink()
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await _select(pilot, app, second)
        await pilot.press("D")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DiffScreen) and screen.new is None
        result = screen.result
        assert result is not None
        got = {c.path: c.status for c in result.changes}
        assert got["sub/new.txt"] == "added" and got["a.txt"] == "removed"
        tree = screen.query_one(DiffTree)
        removed = next(
            n
            for n in tree.root.children
            if n.data is not None and getattr(n.data, "path", "") == "a.txt"
        )
        tree.move_cursor(removed)
        await pilot.press("r")  # bring back what the backup held
        await settle(pilot)
        assert isinstance(app.screen, RestoreScreen) and app.screen.backup.id == second.id


async def test_find_lists_the_backups_and_jumps_to_one(tui_root: Path, seeded: dict) -> None:
    first, second = seeded["first"], seeded["second"]
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, FindScreen)
        app.screen.query_one(Input).focus()
        await type_text(pilot, "a.txt")
        await pilot.press("enter")
        await settle(pilot)
        find = app.screen
        assert isinstance(find, FindScreen) and find.result is not None
        assert [v.newest for v in find.result.hits[0].versions] == [second.id, first.id]
        options = find.query_one(OptionList)
        assert options.option_count == 2
        options.highlighted = 1
        await pilot.press("enter")  # jump to the older backup
        await settle(pilot)
        assert app.screen is app.main
        assert app.main.current_backup is not None and app.main.current_backup.id == first.id


async def test_find_from_the_browser_and_folder_sizes(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        tree = app.screen.query_one("#tree")
        sub = next(n for n in tree.root.children if n.data is not None and n.data.name == "sub")
        assert sub.data.size == 600 + 200 * 1024  # b.txt and deep/c.bin below it
        assert "200.6 KiB" in str(sub.label)
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, FindScreen)


def test_build_tree_counts_per_folder() -> None:
    from core.compare import DiffChange, DiffSide

    def change(path: str, status: str, kind: str = "file") -> DiffChange:
        side = DiffSide(kind=kind)  # type: ignore[arg-type]
        return DiffChange(
            path=path,
            status=status,  # type: ignore[arg-type]
            old=None if status == "added" else side,
            new=None if status == "removed" else side,
        )

    top = build_tree(
        [
            change("a", "changed", "dir"),
            change("a/x", "added"),
            change("a/b/y", "removed"),
            change("a/b/z", "changed"),
            change("c", "added"),
        ]
    )
    a = top.children["a"]
    assert isinstance(a, Folder) and a.change is not None
    assert (a.added, a.removed, a.changed) == (1, 1, 1)
    assert (a.children["b"].removed, a.children["b"].changed) == (1, 1)
    assert (top.added, top.removed, top.changed) == (2, 1, 2)
    assert a.counts() == "+1 -1 ~1"
