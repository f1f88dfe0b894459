"""Snapshots of the main views (pytest-textual-snapshot): demo data, fixed clock, no blink.

Update after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the SVGs under tests/tui/__snapshots__/ before committing them.
"""

from __future__ import annotations

from datetime import timedelta

from textual.pilot import Pilot
from tui_helpers import settle

from core.models import ProgressEvent
from tui.operations import Operation


async def _ready(pilot: Pilot) -> None:
    await settle(pilot)


def _project(name: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        pilot.app.main.projects.select_project(name)
        await settle(pilot)

    return run_before


def test_main_screen(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(demo_app, terminal_size=(100, 30), run_before=_ready)


def test_main_screen_wide_with_log(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(demo_app, terminal_size=(130, 36), run_before=_project("website"))


def test_main_screen_80x24(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(demo_app, terminal_size=(80, 24), run_before=_project("website"))


def test_filter(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await _project("website")(pilot)
        await pilot.press("slash", *"type:inc tag:env")
        await settle(pilot)

    assert snap_compare(demo_app, terminal_size=(100, 30), run_before=run_before)


def test_new_backup_form(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await _project("website")(pilot)
        await pilot.press("n")
        await settle(pilot)

    assert snap_compare(demo_app, terminal_size=(100, 30), run_before=run_before)


def test_new_backup_progress(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    """The form showing a running backup: a progress event as the core sends it."""

    async def run_before(pilot: Pilot) -> None:
        await _project("website")(pilot)
        await pilot.press("n")
        await settle(pilot)
        op = Operation("create", "website", "backup website (incremental)")
        op.backup_id = "20261129-150000-5a1b2c"
        op.progress = ProgressEvent(
            operation="create",
            project_id="website",
            backup_id=op.backup_id,
            phase="reading",
            files_done=7,
            files_total=13,
            bytes_done=52_000,
            bytes_total=128_000,
            current_path="img/photo-03.png",
            rate_bytes_per_second=2_600_000,
            eta_seconds=timedelta(seconds=3).total_seconds(),
            elapsed_seconds=2.0,
        )
        pilot.app.screen.show_operation(op)
        await settle(pilot)

    assert snap_compare(demo_app, terminal_size=(100, 30), run_before=run_before)


def test_restore_preview(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await _project("website")(pilot)
        await pilot.press("down", "r")  # the checkpoint "before-redesign"
        await settle(pilot)
        await pilot.press("ctrl+d")
        await settle(pilot)

    assert snap_compare(demo_app, terminal_size=(110, 34), run_before=run_before)


def test_file_browser(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await _project("website")(pilot)
        await pilot.press("b")
        await settle(pilot)
        await pilot.press("down", "enter")  # open css/
        await settle(pilot)
        await pilot.press("down", "space", "down", "down", "space")
        await settle(pilot)

    assert snap_compare(demo_app, terminal_size=(100, 30), run_before=run_before)


def test_stats_view_80x24(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    """The stats view (issue 15) at 80x24: plots over time and the selected backup's phases."""

    async def run_before(pilot: Pilot) -> None:
        await _project("website")(pilot)
        await pilot.press("T")
        await settle(pilot)

    assert snap_compare(demo_app, terminal_size=(80, 24), run_before=run_before)


def test_diff_screen_80x24(snap_compare, demo_app) -> None:  # type: ignore[no-untyped-def]
    """Issue 17: `m` on one backup, `D` on another: the diff as a tree with counts per folder."""

    async def run_before(pilot: Pilot) -> None:
        await _project("website")(pilot)
        await pilot.press("down", "m", "up", "D")
        await settle(pilot)
        pilot.app.clear_notifications()
        await settle(pilot)

    assert snap_compare(demo_app, terminal_size=(80, 24), run_before=run_before)
