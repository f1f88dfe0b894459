"""Short ids: the start of an id's random part (`fcaf67` of `20261201-160945-fcaf67`) names
a backup wherever an id is taken, when exactly one backup has it; an ambiguous one is refused
before anything is read, restored or deleted, and a backup whose whole id looks short wins."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import chain
from pathlib import Path

import pytest

from core.errors import InvalidInput, NotFound
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest

IDS = ["20300101-000000-abcd12", "20300101-000100-abcd99", "20300101-000200-ffee00"]


def _manager(root: Path, ids: list[str]) -> BackupManager:
    it = chain(ids)
    return BackupManager(root, new_id=lambda: next(it))


async def _three(root: Path, data_dir: Path) -> BackupManager:
    mgr = _manager(root, IDS)
    for _ in IDS:
        await mgr.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    return mgr


async def test_a_unique_short_id_names_its_backup(root: Path, data_dir: Path, tmp_path: Path):
    mgr = await _three(root, data_dir)
    assert (await mgr.info("p", "ffee00")).metadata.id == IDS[2]
    assert (await mgr.info("p", "abcd1")).metadata.id == IDS[0]
    res = await mgr.restore(
        RestoreRequest(project_id="p", backup_id="ffee", restore_dir=str(tmp_path / "out"))
    )
    assert res.backup_id == IDS[2]
    assert (await mgr.verify("p", "abcd9")).backup_id == IDS[1]


async def test_an_ambiguous_short_id_is_refused_and_deletes_nothing(root: Path, data_dir: Path):
    mgr = await _three(root, data_dir)
    with pytest.raises(InvalidInput, match="names 2 backups"):
        await mgr.delete("p", "abcd")
    with pytest.raises(InvalidInput, match="names 2 backups"):
        await mgr.restore(RestoreRequest(project_id="p", backup_id="abcd", restore_dir=str(root)))
    assert sorted(m.id for m in await mgr.list("p")) == IDS


async def test_an_unknown_short_id_is_not_found(root: Path, data_dir: Path):
    mgr = await _three(root, data_dir)
    with pytest.raises(NotFound):
        await mgr.info("p", "0000")
    with pytest.raises(NotFound):
        await mgr.info("p", "ffe")  # under four characters is not a short id
    with pytest.raises(NotFound):
        await mgr.delete("p", "cd12")  # the end of an id's random part is not its start
    assert len(await mgr.list("p")) == 3


async def test_a_whole_id_that_looks_short_wins(root: Path, data_dir: Path):
    mgr = _manager(root, ["abcd", "20300101-000000-abcd12"])
    for _ in range(2):
        await mgr.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    assert (await mgr.info("p", "abcd")).metadata.id == "abcd"
    assert (await mgr.info("p", "abcd1")).metadata.id == "20300101-000000-abcd12"


def test_the_cli_takes_a_short_id(tmp_path: Path, data_dir: Path):
    root = tmp_path / "r"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "cli", "--root", str(root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    assert cli("create", "p", str(data_dir)).returncode == 0
    assert cli("create", "p", str(data_dir)).returncode == 0
    listed = cli("list", "p", "--json")
    ids = [b["id"] for b in json.loads(listed.stdout)]
    short = ids[0].rsplit("-", 1)[-1]
    shown = cli("info", "p", short)
    assert shown.returncode == 0, shown.stderr
    assert ids[0] in shown.stdout
    unknown = cli("delete", "p", "0000")
    assert unknown.returncode == 1, unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert len(json.loads(cli("list", "p", "--json").stdout)) == 2
