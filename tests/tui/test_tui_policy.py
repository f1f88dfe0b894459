"""Retention from the TUI at 80x24, keys only, against the real core: the preview marks what
the engine's own rules decide as the rules are typed; applying removes exactly the marked
backups (still restorable, listed as removed); `u` brings one back; `p` protects a backup,
and a protected backup is kept whatever the rules say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.widgets import DataTable, Input
from tui_helpers import plain, settle, type_text, wait_for

from core.manager import BackupManager
from core.models import CreateRequest
from tui.app import NexusApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.policy import PolicyScreen
from tui.screens.removed import RemovedScreen

SIZE = (80, 24)
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # the app's clock and every manager's here


async def _daily_backups(root: Path, data: Path, days: int) -> list[str]:
    """One backup a day at 10:00 UTC, oldest first; their ids newest first."""
    mgr = BackupManager(root, clock=lambda: NOW)
    await mgr.create_project("web", str(data))
    ids = []
    for back in range(days, 0, -1):
        (data / "day.txt").write_text(f"day {back}\n")
        meta = await mgr.create(
            CreateRequest(
                project_id="web",
                data_dir=str(data),
                created_at=NOW.replace(hour=10) - timedelta(days=back - 1),
            )
        )
        ids.append(meta.id)
    return ids[::-1]


def _cell(table: DataTable, row: object, column: str) -> str:
    value = table.get_cell(row, column)
    return value.plain if hasattr(value, "plain") else str(value)


def _marks(screen: PolicyScreen) -> dict[str, str]:
    table = screen.query_one("#policy-preview", DataTable)
    return {str(row.value): _cell(table, row, "mark") for row in table.rows}


async def _open_policy(app: NexusApp, pilot) -> PolicyScreen:
    """The selected project's policy screen, opened with `P`."""
    await pilot.press("P")
    await wait_for(pilot, lambda: isinstance(app.screen, PolicyScreen))
    return app.screen


async def test_the_preview_follows_the_rules_and_apply_removes_what_it_marked(
    tmp_path: Path,
) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    ids = await _daily_backups(root, data, 6)
    app = NexusApp(root, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_policy(app, pilot)
        assert "No policy" in plain(screen.query_one("#policy-help"))
        await type_text(pilot, "2")  # last 2
        await settle(pilot)
        assert _marks(screen) == {i: ("keep" if n < 2 else "REMOVE") for n, i in enumerate(ids)}
        assert "keeps 2 · removes 4" in plain(screen.query_one("#policy-summary"))

        screen.query_one("#f-keep_daily", Input).value = "x"
        await settle(pilot)
        help_line = plain(screen.query_one("#policy-help"))
        assert help_line.startswith("✗ daily: a whole number"), help_line
        await pilot.press("ctrl+s")  # nothing valid to apply: nothing happens
        assert isinstance(app.screen, PolicyScreen)
        screen.query_one("#f-keep_daily", Input).value = "3"
        await settle(pilot)
        assert list(_marks(screen).values()).count("keep") == 3  # last 2 and daily 3 overlap

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "remove 3 backups" in plain(app.screen.query_one("#confirm-body"))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is app.main)
        await wait_for(pilot, lambda: not app.operations.running)
        await settle(pilot)

        mgr = BackupManager(root, clock=lambda: NOW)
        assert [m.id for m in await mgr.list("web")] == ids[:3]
        assert sorted(m.id for m in await mgr.removed("web")) == sorted(ids[3:])
        assert (await mgr.policy("web")).keep_daily == 3  # type: ignore[union-attr]

        # the removed ones are listed with their grace; u brings the highlighted one back
        await pilot.press("U")
        await wait_for(pilot, lambda: isinstance(app.screen, RemovedScreen))
        await wait_for(pilot, lambda: app.screen.removed)
        first = app.screen.removed[0].id
        await pilot.press("u")
        await wait_for(pilot, lambda: len(app.screen.removed) == 2)
        await pilot.press("escape")
    assert first in {m.id for m in await BackupManager(root, clock=lambda: NOW).list("web")}


async def test_a_protected_backup_is_kept_whatever_the_rules_say(tmp_path: Path) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    ids = await _daily_backups(root, data, 3)
    app = NexusApp(root, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")  # the backup table
        await settle(pilot)
        await pilot.press("down", "down")  # its oldest row
        await settle(pilot)
        oldest = app.main.current_backup
        assert oldest is not None and oldest.id == ids[-1]
        await pilot.press("p")
        mgr = BackupManager(root, clock=lambda: NOW)
        await wait_for(pilot, lambda: mgr.list_blocking("web")[-1].protected)
        await settle(pilot)
        assert "Protected" in plain(app.main.query_one("#detail-body"))
        await _open_policy(app, pilot)
        await type_text(pilot, "1")
        await settle(pilot)
        marks = _marks(app.screen)
        assert marks == {ids[0]: "keep", ids[1]: "REMOVE", ids[2]: "keep"}
        table = app.screen.query_one("#policy-preview", DataTable)
        assert _cell(table, ids[2], "why").startswith("protected")


async def test_a_policy_without_grace_is_confirmed_as_deleting_for_good(tmp_path: Path) -> None:
    """Grace 0 h: forget deletes what the rules remove at once, space and all; the
    confirmation must say so, never that they stay restorable and undelete brings one back."""
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    ids = await _daily_backups(root, data, 4)
    app = NexusApp(root, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_policy(app, pilot)
        await type_text(pilot, "2")  # last 2
        screen.query_one("#f-grace_hours", Input).value = "0"
        await settle(pilot)
        assert "restorable" not in plain(screen.query_one("#policy-summary"))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        body = plain(app.screen.query_one("#confirm-body"))
        assert "delete 2 backups for good" in body, body
        assert "undelete" not in body and "restorable" not in body, body
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is app.main)
        await wait_for(pilot, lambda: not app.operations.running)
        await settle(pilot)
    mgr = BackupManager(root, clock=lambda: NOW)
    assert [m.id for m in await mgr.list("web")] == ids[:2]
    assert await mgr.removed("web") == [], "what the confirmation said is deleted is deleted"
