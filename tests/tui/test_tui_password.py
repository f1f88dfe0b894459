"""An encrypted project in the TUI (issue 12): its password asked when it is opened, in a
dialog that tries it (a wrong one says so and asks again), kept for the session only; a real
encrypted repository, the keyboard only, 80x24."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import Input
from tui_helpers import notes, plain, settle, type_text, wait_for

from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, RestoreRequest
from core.repo.repository import Repository
from tui.app import NexusApp
from tui.screens.password import PasswordScreen

PASSWORD = "correct horse"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
async def vault(tui_root: Path, tui_data: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Project `vault`, encrypted under PASSWORD, with one full backup of tui_data; and a
    plain project `alpha` beside it (listed first, so it is the one opened at start)."""
    from store_helpers import fast_kdf

    fast_kdf(monkeypatch)
    mgr = BackupManager(tui_root, password=lambda _p: PASSWORD, encrypt=True)
    await mgr.create_project("vault", str(tui_data))
    meta = await mgr.create(CreateRequest(project_id="vault", data_dir=str(tui_data)))
    await BackupManager(tui_root).create_project("alpha", str(tui_data))
    assert Repository(tui_root, "vault").encrypted()
    return {"backup": meta, "data": tui_data}


async def _open_vault(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    pilot.app.main.projects.select_project("vault")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PasswordScreen))


@pytest.mark.slow
async def test_wrong_then_right_password_opens_the_project(
    tui_root: Path, vault: dict, tmp_path: Path
) -> None:
    app = NexusApp(tui_root, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        main = app.main
        # the plain project opened without a question; the encrypted one is listed, locked
        assert app.screen is main and main.project_id == "alpha"
        locked = main.projects.summary("vault")
        assert locked is not None and locked.locked and locked.encrypted

        await _open_vault(pilot)
        dialog = app.screen
        field = dialog.query_one("#password", Input)
        assert field.password  # masked
        await type_text(pilot, "wrong")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not field.disabled)
        assert app.screen is dialog  # still asking
        assert "Wrong password" in plain(dialog.query_one("#password-error"))
        assert field.value == ""
        assert "vault" not in app.passwords

        await type_text(pilot, PASSWORD)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main)
        await settle(pilot)
        assert app.passwords == {"vault": PASSWORD}
        assert [b.id for b in main.table.backups] == [vault["backup"].id]
        summary = main.projects.summary("vault")
        assert summary is not None and summary.encrypted and not summary.locked
        assert summary.backups == 1

        # operations on the project now run without another question: a backup, a restore
        (vault["data"] / "a.txt").write_bytes(b"alpha version 3\n")
        app.start_create(CreateRequest(project_id="vault", data_dir=str(vault["data"])))
        await settle(pilot)
        assert len(main.table.backups) == 2
        assert all(b.status == BackupStatus.COMPLETED for b in main.table.backups)
        target = tmp_path / "restored"
        newest = max(main.table.backups, key=lambda b: b.created_at)
        app.start_restore(
            RestoreRequest(project_id="vault", backup_id=newest.id, restore_dir=str(target))
        )
        await settle(pilot)
        assert _tree(target) == _tree(vault["data"])
        assert not [n for n in notes(app) if "failed" in n.lower()]


@pytest.mark.slow
async def test_escape_leaves_it_locked_and_u_asks_again(tui_root: Path, vault: dict) -> None:
    app = NexusApp(tui_root, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_vault(pilot)
        await pilot.press("escape")
        await settle(pilot)
        main = app.main
        assert app.screen is main and main.project_id == "vault"
        assert main.table.backups == []
        assert "vault is encrypted and locked" in plain(main.detail.query_one("#detail-body"))
        assert app.is_locked("vault")
        # a new backup of a locked project asks for its password first
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, PasswordScreen))
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, PasswordScreen))
        await type_text(pilot, PASSWORD)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main)
        await settle(pilot)
        assert len(main.table.backups) == 1
        assert not app.is_locked("vault")


async def test_an_empty_password_is_not_tried(tui_root: Path, vault: dict) -> None:
    app = NexusApp(tui_root, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_vault(pilot)
        await pilot.press("enter")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, PasswordScreen) and dialog.tries == 0
        assert "Type the password" in plain(dialog.query_one("#password-error"))


async def test_the_password_is_never_written(tui_root: Path, vault: dict) -> None:
    """What the session keeps is in memory: after it, no file under the root (logs
    included) holds the password."""
    app = NexusApp(tui_root, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_vault(pilot)
        await type_text(pilot, PASSWORD)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.main)
        await settle(pilot)
    for dirpath, _dirs, files in os.walk(tui_root):
        for name in files:
            assert PASSWORD.encode() not in (Path(dirpath) / name).read_bytes()


def test_password_dialog_snapshot(
    snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The dialog as an encrypted project is opened at 80x24, after one wrong password;
    fixed clock, paths under a $HOME of the test's own, so the picture is the same every run."""
    import asyncio

    from conftest_of import conftest_of

    FIXED_NOW = conftest_of(__file__).FIXED_NOW
    from store_helpers import fast_kdf

    fast_kdf(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path))
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_bytes(b"sealed\n")
    root = tmp_path / "root"
    mgr = BackupManager(root, password=lambda _p: PASSWORD, encrypt=True, clock=lambda: FIXED_NOW)
    asyncio.run(mgr.create(CreateRequest(project_id="vault", data_dir=str(data))))
    app = NexusApp(root, clock=lambda: FIXED_NOW, poll_interval=3600)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PasswordScreen))
        await type_text(pilot, "guess")
        await pilot.press("enter")
        field = pilot.app.screen.query_one("#password", Input)
        await wait_for(pilot, lambda: not field.disabled)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.slow
async def test_a_new_encrypted_project_from_the_tui(
    tui_root: Path, tui_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N, the directory, the "encrypted" tick, the password twice: the project is encrypted
    and open for this session; backing it up asks nothing; the next session asks."""
    from store_helpers import fast_kdf

    from tui.screens.new_backup import NewBackupScreen
    from tui.screens.new_project import NewProjectScreen

    fast_kdf(monkeypatch)
    app = NexusApp(tui_root, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("N")
        form = app.screen
        assert isinstance(form, NewProjectScreen)
        await type_text(pilot, str(tui_data))
        await pilot.press("tab", "tab", "space")  # past the id (tab skips the picker): the tick
        await settle(pilot)
        assert app.focused is form.query_one("#project-password", Input)
        await type_text(pilot, PASSWORD)
        await pilot.press("enter")
        await type_text(pilot, "something else")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form  # refused: the two differ
        assert "differ" in plain(form.query_one("#project-password-help"))
        assert not (tui_root / "backups" / "data").exists()
        form.query_one("#project-password-again", Input).value = PASSWORD
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is app.main
        assert Repository(tui_root, "data").encrypted()
        assert app.passwords == {"data": PASSWORD}
        await pilot.press("n")
        assert isinstance(app.screen, NewBackupScreen)
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert [b.status for b in app.main.table.backups] == [BackupStatus.COMPLETED]
    again = NexusApp(tui_root, poll_interval=3600)
    async with again.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(again.screen, PasswordScreen))
