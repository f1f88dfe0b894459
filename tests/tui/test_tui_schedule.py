"""Schedules in the TUI at 80x24 (issue 14), against the real core: the projects pane says
when a scheduled project runs next and marks an overdue one as loudly as a failed backup; the
policy screen edits the schedule, shows the next five runs as it is typed, and saves a
schedule alone without removing any backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.widgets import Input
from tui_helpers import plain, settle, wait_for

from core.manager import BackupManager
from core.models import CreateRequest
from core.retention import Policy
from tui.app import NexusApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.policy import PolicyScreen
from tui.widgets.projects import ProjectList

SIZE = (80, 24)
NOW = datetime(2026, 12, 1, 15, 10, tzinfo=UTC)


async def _projects(root: Path, data: Path) -> None:
    """`late`: hourly, last backed up five hours ago (overdue); `web`: daily 03:00, backed up
    an hour ago (next run tomorrow)."""
    mgr = BackupManager(root, clock=lambda: NOW)
    for name, back, schedule in (("late", 5, "hourly"), ("web", 1, "daily 03:00")):
        await mgr.create_project(name, str(data))
        req = CreateRequest(
            project_id=name, data_dir=str(data), created_at=NOW - timedelta(hours=back)
        )
        await mgr.create(req)
        await mgr.set_policy(name, Policy(schedule=schedule))


async def test_projects_pane_shows_next_run_and_marks_overdue(tmp_path: Path) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("x\n")
    await _projects(root, data)
    app = NexusApp(root, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.query_one(ProjectList)
        await wait_for(pilot, lambda: pane.option_count == 2)
        late = str(pane.get_option("late").prompt)
        web = str(pane.get_option("web").prompt)
        assert "✗ schedule overdue" in late
        assert "next run in 11h" in web  # 03:00 tomorrow, from 15:10


@pytest.mark.slow
async def test_policy_screen_edits_the_schedule_and_shows_next_runs(tmp_path: Path) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("x\n")
    mgr = BackupManager(root, clock=lambda: NOW)
    await mgr.create_project("web", str(data))
    for back in (2, 1):
        req = CreateRequest(
            project_id="web", data_dir=str(data), created_at=NOW - timedelta(days=back)
        )
        await mgr.create(req)
    app = NexusApp(root, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("P")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyScreen))
        screen = app.screen
        assert "No schedule" in plain(screen.query_one("#policy-runs"))
        screen.query_one("#f-schedule", Input).value = "Mon..Fri 02:30"
        await settle(pilot)
        runs = plain(screen.query_one("#policy-runs"))
        # Tue 1 Dec 15:10: Wed, Thu, Fri, then Mon and Tue of the next week
        assert runs == "next (UTC): 12-02 02:30  12-03 02:30  12-04 02:30  12-07 02:30  12-08 02:30"
        assert "every backup is kept" in plain(screen.query_one("#policy-help"))
        screen.query_one("#f-schedule", Input).value = "Mon..Fry 02:30"
        await settle(pilot)
        assert plain(screen.query_one("#policy-help")).startswith("✗ schedule:")
        screen.query_one("#f-schedule", Input).value = "0 3 * * *"
        await settle(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is app.main)
        await wait_for(pilot, lambda: not app.operations.running)
        stored = await BackupManager(root, clock=lambda: NOW).policy("web")
        assert stored is not None and stored.schedule == "0 3 * * *"
        assert len(await BackupManager(root, clock=lambda: NOW).list("web")) == 2  # nothing removed
