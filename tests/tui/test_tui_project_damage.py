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
