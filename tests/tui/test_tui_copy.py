"""The copy action at 80x24 against the real core: keys only, the target checked as typed,
progress then one result line, and the target then holds the backups (opened by a manager
of its own and restored byte for byte); a bad target is one clear line and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input
from tui_helpers import plain, settle, type_text, wait_for

from core.manager import BackupManager
from core.models import RestoreRequest
from tui.app import NexusApp
from tui.screens.copy import CopyScreen
from tui.widgets.progress_panel import OperationProgress

SIZE = (80, 24)


async def _open_copy(pilot, app: NexusApp) -> CopyScreen:  # type: ignore[no-untyped-def]
    await pilot.press("C")
    await wait_for(pilot, lambda: isinstance(app.screen, CopyScreen))
    return app.screen


@pytest.mark.slow  # two copies and a restore through the real core: 2-4 s
async def test_copy_sends_the_backups_and_the_target_restores_them(
    tui_root: Path, seeded: dict, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the target is typed as ~/offsite
    target = tmp_path / "offsite"
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_copy(pilot, app)
        assert "2 completed backups" in plain(screen.query_one("#copy-from"))
        await type_text(pilot, "~/offsite")
        assert "will be created" in plain(screen.query_one("#copy-to-help"))
        await pilot.press("ctrl+s")
        assert screen.query(OperationProgress)  # the form became the copy's progress
        await wait_for(pilot, lambda: screen.op is not None and not screen.op.running)
        await settle(pilot)
        result = plain(screen.query_one("#result"))
        assert result.startswith("✓ copied 2 backups,") and "sent" in result, result

        # the target is remembered for this project: the next copy offers it again
        await pilot.press("escape")
        screen = await _open_copy(pilot, app)
        assert screen.query_one("#copy-to", Input).value == str(target)  # as the engine got it
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.op is not None and not screen.op.running)
        await settle(pilot)
        assert "nothing to send: 2 backups already there" in plain(screen.query_one("#result"))

    reader = BackupManager(tmp_path / "reader", repository=target)
    copied = await reader.list("proj")
    assert {b.id for b in copied} == {seeded["first"].id, seeded["second"].id}
    out = tmp_path / "restored"
    await reader.restore(
        RestoreRequest(project_id="proj", backup_id=seeded["second"].id, restore_dir=str(out))
    )
    data: Path = seeded["data"]
    for rel in ("a.txt", "sub/b.txt", "sub/deep/c.bin"):
        assert (out / rel).read_bytes() == (data / rel).read_bytes(), rel


async def test_a_bad_target_is_one_line_and_nothing_runs(
    tui_root: Path, seeded: dict, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"keep me\n")
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_copy(pilot, app)
        await type_text(pilot, "~/a-file")
        await pilot.press("ctrl+s")
        await settle(pilot)
        help_line = plain(screen.query_one("#copy-to-help"))
        assert help_line.startswith("✗ ") and "is not a directory" in help_line
        assert screen.op is None and not app.operations.running

        # the engine's own refusal (this very repository) ends the copy with its one line
        screen.query_one("#copy-to", Input).value = str(tui_root)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.op is not None and not screen.op.running)
        await settle(pilot)
        result = plain(screen.query_one("#result"))
        assert result.startswith("✗ failed: ") and "this repository" in result, result
        assert "\n" not in result.strip() and "Traceback" not in result
    assert a_file.read_bytes() == b"keep me\n"


async def test_copy_from_the_palette_and_where_the_repositories_live(
    tui_root: Path, seeded: dict
) -> None:
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        where = app.main.projects.border_subtitle
        assert where and str(tui_root).endswith(where.lstrip("…")), where
        assert len(where) <= 24
        await pilot.press("ctrl+p")
        await type_text(pilot, "copy")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CopyScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main)


async def test_the_dialog_offers_the_projects_copy_to_setting(
    tui_root: Path, seeded: dict, tmp_path: Path
) -> None:
    twin = tmp_path / "twin"
    await BackupManager(tui_root).set_copy_to("proj", str(twin))
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_copy(pilot, app)
        assert screen.query_one("#copy-to", Input).value == str(twin)


async def test_the_target_password_opens_an_encrypted_target(
    tui_root: Path, seeded: dict, tmp_path: Path, monkeypatch
) -> None:
    """A plain project copied into a target encrypted under its own password: refused
    (naming the target) without it, copied with it typed in the form's password field."""
    from store_helpers import fast_kdf

    fast_kdf(monkeypatch)
    target = tmp_path / "vault"
    owner = BackupManager(
        tmp_path / "owner", repository=target, password=lambda _p: "B" * 12, encrypt=True
    )
    await owner.create_project("proj")
    app = NexusApp(tui_root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await _open_copy(pilot, app)
        screen.query_one("#copy-to", Input).value = str(target)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.op is not None and not screen.op.running)
        await settle(pilot)
        assert "target" in plain(screen.query_one("#result"))
        assert not await owner.list("proj")
        await pilot.press("escape")
        screen = await _open_copy(pilot, app)
        screen.query_one("#copy-to", Input).value = str(target)
        screen.query_one("#copy-password", Input).value = "B" * 12
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.op is not None and not screen.op.running)
        await settle(pilot)
        assert plain(screen.query_one("#result")).startswith("✓ copied 2 backups")
    assert {b.id for b in await owner.list("proj")} == {seeded["first"].id, seeded["second"].id}
