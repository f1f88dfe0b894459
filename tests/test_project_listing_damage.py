"""A project whose config.json is damaged still lists its backups (metadata.json stands
alone) while every restore and backup of it fails: the listings of projects say so, on every
face, rather than show it healthy, and never leave it out (design I3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from metrics_helpers import nb as _cli

from core.errors import Damaged
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    """Projects `good`, `bad` (its config.json garbage) and `newer` (a newer format)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("x\n")
    root = tmp_path / "root"
    mgr = BackupManager(root)
    for p in ("good", "bad", "newer"):
        await mgr.create(CreateRequest(project_id=p, data_dir=str(data)))
    (root / "backups" / "bad" / "config.json").write_text("garbage, not JSON")
    config = root / "backups" / "newer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "version": 99}))
    return root


async def test_the_engine_lists_it_with_why(root: Path, tmp_path: Path) -> None:
    mgr = BackupManager(root)
    summaries = {p.project_id: p for p in await mgr.projects()}
    assert set(summaries) == {"good", "bad", "newer"}
    assert "config.json" in (summaries["bad"].unreadable or "")
    assert summaries["bad"].backups == 1  # its backups still list
    assert summaries["good"].unreadable is None
    assert summaries["newer"].unreadable is None  # readers list a newer format
    with pytest.raises(Damaged, match=r"config\.json"):  # what the listing warns of
        await mgr.restore(
            RestoreRequest(project_id="bad", backup_id="latest", restore_dir=str(tmp_path / "o"))
        )


async def test_the_cli_says_so_and_exits_1(root: Path) -> None:
    shown = _cli(root, "projects")
    assert shown.returncode == 1, shown.stderr
    bad = next(line for line in shown.stdout.splitlines() if line.startswith("bad "))
    assert "cannot be read: config.json is not valid" in bad
    good = next(line for line in shown.stdout.splitlines() if line.startswith("good "))
    assert "completed" in good
    as_json = _cli(root, "--json", "projects")
    assert as_json.returncode == 1
    listed = {p["project_id"]: p for p in json.loads(as_json.stdout)}
    assert listed["bad"]["unreadable"] and listed["good"]["unreadable"] is None


async def test_list_of_it_says_so_and_exits_1(root: Path) -> None:
    shown = _cli(root, "list", "bad")
    assert shown.returncode == 1
    assert "no backup of it can be restored" in shown.stderr
    assert len(shown.stderr.splitlines()) == 1
    assert len(shown.stdout.splitlines()) == 2  # the header and its one backup
    assert _cli(root, "list", "good").returncode == 0
    assert _cli(root, "list", "newer").returncode == 0


async def test_info_of_its_backup_says_so_and_exits_1(root: Path) -> None:
    """The metadata reads "completed", but the backup cannot be restored: said, exit 1."""
    for args in (("info", "bad", "latest"), ("--json", "info", "bad", "latest")):
        shown = _cli(root, *args)
        assert shown.returncode == 1, args
        assert "completed" in shown.stdout  # the backup is still shown
        assert "no backup of it can be restored" in shown.stderr
        assert len(shown.stderr.splitlines()) == 1
    assert _cli(root, "info", "good", "latest").returncode == 0
    assert _cli(root, "info", "newer", "latest").returncode == 0
