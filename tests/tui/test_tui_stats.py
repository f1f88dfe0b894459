"""The stats view (issue 15) against the real core: key T and the palette open it on the
selected project, it shows what `stats` computes, steps between backups, and closes."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Sparkline
from tui_helpers import plain, settle, wait_for

from core.manager import BackupManager
from tui.app import NexusApp
from tui.commands import NexusCommands
from tui.screens.stats import StatsScreen


async def test_t_opens_the_stats_of_the_highlighted_backup(tui_root: Path, seeded: dict) -> None:
    expected = await BackupManager(tui_root).stats("proj")
    app = NexusApp(tui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("T")
        await wait_for(pilot, lambda: isinstance(app.screen, StatsScreen))
        screen = app.screen
        assert isinstance(screen, StatsScreen)
        await wait_for(pilot, lambda: screen.stats is not None)
        await settle(pilot)
        assert screen.stats == expected  # the same numbers as `stats --json`
        totals = plain(screen.query_one("#stats-totals"))
        assert "2 backups (2 completed)" in totals
        durations = screen.query_one("#plot-duration", Sparkline).data
        assert list(durations or []) == [r.duration_seconds for r in expected.backups]
        # the highlighted backup (the newest) and its phases; then the older one
        phases = plain(screen.query_one("#stats-phases"))
        assert seeded["second"].id in phases and "chunk+hash" in phases
        await pilot.press("left")
        assert seeded["first"].id in plain(screen.query_one("#stats-phases"))
        await pilot.press("left")  # the oldest stays the oldest
        assert screen.backup_id == seeded["first"].id
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main)


async def test_the_palette_names_the_stats_view(tui_root: Path, seeded: dict) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        commands = NexusCommands(app.screen).commands()
        [(_name, callback, help_text)] = [c for c in commands if c[0] == "Project: stats"]
        assert "(T)" in help_text
        callback()
        await wait_for(pilot, lambda: isinstance(app.screen, StatsScreen))
        await settle(pilot)
        assert app.screen.project_id == "proj"  # type: ignore[attr-defined]
