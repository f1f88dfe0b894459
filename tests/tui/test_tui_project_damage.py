"""The projects pane marks a project whose config.json is damaged (its backups list, none
restores) rather than show it healthy (tests/test_project_listing_damage.py: the engine
and the CLI)."""

from __future__ import annotations

from pathlib import Path

from tui_helpers import settle, wait_for

from core.manager import BackupManager
from core.models import CreateRequest
from tui.app import NexusApp
from tui.widgets.projects import ProjectList


async def test_the_projects_pane_marks_a_project_that_cannot_be_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("x\n")
    root = tmp_path / "root"
    mgr = BackupManager(root)
    for p in ("good", "bad"):
        await mgr.create(CreateRequest(project_id=p, data_dir=str(data)))
    (root / "backups" / "bad" / "config.json").write_text("garbage, not JSON")
    app = NexusApp(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        pane = app.query_one(ProjectList)
        await wait_for(pilot, lambda: pane.option_count == 2)
        bad = str(pane.get_option("bad").prompt)
        assert "cannot be read" in bad and "✗" in bad
        assert "cannot be read" not in str(pane.get_option("good").prompt)


async def test_a_restore_past_a_damaged_pack_names_what_it_could_not_restore(
    tmp_path: Path,
) -> None:
    """A pack of the newest backup truncated: the restore dialog restores every other file
    and says, in red, which file it could not and why; the toast says DAMAGED. Never a
    green "Verified" for a restore that left a file out."""
    import os

    from textual.widgets import Input
    from tui_helpers import plain

    from tui.screens.restore import RestoreScreen

    data, root, target = tmp_path / "data", tmp_path / "root", tmp_path / "target"
    data.mkdir()
    (data / "old.bin").write_bytes(os.urandom(400_000))
    mgr = BackupManager(root)
    await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    packs = root / "backups" / "web" / "packs"
    (bad,) = [p for p in packs.rglob("*") if p.is_file()]
    (data / "new.txt").write_text("healthy\n")
    await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    os.truncate(bad, bad.stat().st_size // 2)
    app = NexusApp(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RestoreScreen)
        screen.query_one("#target", Input).value = str(target)
        await pilot.press("ctrl+s")
        await settle(pilot)
        if app.screen is not screen:  # the confirmation
            await pilot.press("y")
            await settle(pilot)
        await wait_for(pilot, lambda: screen.op is not None and not screen.op.running)
        await settle(pilot)
        shown = " ".join(plain(screen.query_one("#result")).split())
        assert "1 file not restored" in shown and "old.bin" in shown, shown
        assert "Verified: every written file" not in shown
    assert (target / "new.txt").read_text() == "healthy\n"
    assert not (target / "old.bin").exists()
