"""A project whose creation was killed between its key object and its config.json (an
encrypted project's key goes first): it holds no backup. Every command says it was left half
made, in one line, and delete-project removes it, so its name can be made again. While the
key object is young a creation may still be going on: then nothing is deleted."""

from __future__ import annotations

import os
import time
from pathlib import Path

from core.repo import crypto
from core.repo.repository import HALF_MADE_AGE
from tests.test_cli import _env, nb

PW = {"NEXUS_BACKUP_PASSWORD": "pw"}


def _half_made(root: Path, age: float) -> Path:
    keys = root / "backups" / "web" / "keys"
    keys.mkdir(parents=True)
    key_id = "a" * 32
    params = crypto.KdfParams(64, 1, 1)
    (keys / key_id).write_bytes(
        crypto.make_key_object(crypto.new_master_key(), "pw", key_id, params=params)
    )
    when = time.time() - age
    os.utime(keys / key_id, (when, when))
    return keys / key_id


def test_a_half_made_project_is_said_and_delete_project_removes_it(tmp_path: Path) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("x\n")
    _half_made(root, HALF_MADE_AGE + 60)
    for args in (["list", "web"], ["create", "web", str(data)], ["info", "web", "latest"]):
        r = nb(root, *args, env=_env(**PW))
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert "left half made" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = nb(root, "delete-project", "web", "--yes", env=_env(**PW))
    assert r.returncode == 0, r.stderr
    assert not (root / "backups" / "web").exists()
    r = nb(root, "create", "web", str(data), "--encrypt", env=_env(**PW))
    assert r.returncode == 0, r.stderr
    assert (
        nb(root, "restore", "web", "latest", str(tmp_path / "out"), env=_env(**PW)).returncode == 0
    )
    assert (tmp_path / "out" / "f.txt").read_text() == "x\n"


def test_a_project_whose_key_was_just_written_is_never_deleted_as_half_made(tmp_path: Path) -> None:
    """A creation going on now (its key object written a moment ago) is not half made: a
    delete-project meanwhile deletes nothing, so the creation's config, written next, is
    never left without its key."""
    root = tmp_path / "root"
    key = _half_made(root, 0)
    before = key.read_bytes()
    r = nb(root, "delete-project", "web", "--yes", env=_env(**PW))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "being made by another process" in r.stderr and len(r.stderr.splitlines()) == 1
    assert key.read_bytes() == before
