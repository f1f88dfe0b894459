"""The TUI's manager when ANOTHER process deletes the encrypted project it has open and makes
one of that name anew (docs/design.md §4, I18): the TUI's next backup is sealed with the new
project's key (a fresh CLI checks it with --read-data and restores it byte for byte), and
when the new project has another password, nothing is written into it. Real CLI processes,
the real core, 80x24."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tui_helpers import notes, settle, type_text, wait_for

from core.errors import NotFound
from core.models import BackupStatus, CreateRequest
from tui.app import NexusApp
from tui.screens.password import PasswordScreen

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse"


def nb(root: Path, *args: str, pw: str = PASSWORD) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env.update(PYTHONUNBUFFERED="1", NEXUS_BACKUP_PASSWORD=pw)
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args[4:], r.returncode, r.stdout, r.stderr)
    return r.stdout


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "locks" not in p.parts
    }


async def _unlocked_vault(pilot, backups: int) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await settle(pilot)
    app.main.projects.select_project("vault")
    await wait_for(pilot, lambda: isinstance(app.screen, PasswordScreen))
    await type_text(pilot, PASSWORD)
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.screen is app.main)
    await settle(pilot)
    assert len(app.main.table.backups) == backups


@pytest.mark.parametrize("new_password", [PASSWORD, "another password"])
async def test_the_tuis_backup_after_vault_was_made_anew_is_sealed_with_its_key_or_not_written(
    tui_root: Path, tui_data: Path, tmp_path: Path, new_password: str
) -> None:
    tui_root.mkdir()
    ok(nb(tui_root, "create", "alpha", str(tui_data)))
    ok(nb(tui_root, "create", "vault", str(tui_data), "--encrypt"))
    app = NexusApp(tui_root, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await _unlocked_vault(pilot, 1)
        ok(nb(tui_root, "delete-project", "vault", "--yes"))
        ok(nb(tui_root, "create", "vault", str(tui_data), "--encrypt", pw=new_password))
        before = _tree(tui_root / "backups" / "vault")
        app.start_create(CreateRequest(project_id="vault", data_dir=str(tui_data)))
        await settle(pilot)
        if new_password != PASSWORD:
            # the password this session knows opens nothing of the new project: said, and
            # nothing is written into it (the old key sealed a backup nothing could open)
            await wait_for(pilot, lambda: any("password" in n.lower() for n in notes(app)))
            assert _tree(tui_root / "backups" / "vault") == before
            r = nb(tui_root, "check", "vault", "--read-data", pw=new_password)
            assert r.returncode == 0, (r.stdout, r.stderr)
            return
        await wait_for(pilot, lambda: len(app.main.table.backups) == 2)
        assert all(b.status == BackupStatus.COMPLETED for b in app.main.table.backups)
        ids = [b.id for b in app.main.table.backups]
    r = nb(tui_root, "check", "vault", "--read-data")
    assert r.returncode == 0, (r.stdout, r.stderr)
    for backup_id in ids:
        target = tmp_path / f"restored-{backup_id}"
        ok(nb(tui_root, "restore", "vault", backup_id, str(target)))
        assert _tree(target) == _tree(tui_data)


async def test_a_backup_another_process_deleted_is_not_browsed_from_memory(
    tui_root: Path, tui_data: Path
) -> None:
    """The TUI's manager keeps the manifests it browsed: a backup another process deleted was
    still browsed from that copy, a tree of files no backup holds any more. Now: not found."""
    tui_root.mkdir()
    ok(nb(tui_root, "create", "proj", str(tui_data)))
    ok(nb(tui_root, "create", "proj", str(tui_data)))
    app = NexusApp(tui_root, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        doomed, kept = sorted(b.id for b in app.main.table.backups)
        names = {e.name for e in await app.mgr.browse("proj", doomed)}
        assert "a.txt" in names
        ok(nb(tui_root, "delete", "proj", doomed))
        with pytest.raises(NotFound):
            await app.mgr.browse("proj", doomed)
        assert {e.name for e in await app.mgr.browse("proj", kept)} == names
