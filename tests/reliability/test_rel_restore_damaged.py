"""A restore of a backup part of whose data is damaged (a pack truncated, garbage, missing,
emptied: a disk's bad sector, a sync tool's half copy): every other file is restored, each
damaged one is named and left in the target as it was (never torn, never emptied), the exit
code says damage (4), and the checkpoint taken first still undoes the whole restore. Real
CLI processes on real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.test_cli import nb


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _packs(root: Path) -> set[Path]:
    return {p for p in (root / "backups" / "web" / "packs").rglob("*") if p.is_file()}


def _damage(pack: Path, how: str) -> None:
    if how == "truncated":
        os.truncate(pack, pack.stat().st_size // 3)
    elif how == "garbage":
        pack.write_bytes(os.urandom(pack.stat().st_size))
    elif how == "missing":
        pack.unlink()
    else:
        pack.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "garbage", "missing", "emptied"])
def test_a_damaged_pack_costs_only_its_own_files_and_the_undo_still_works(
    tmp_path: Path, how: str
) -> None:
    root, data, target = tmp_path / "root", tmp_path / "data", tmp_path / "target"
    data.mkdir()
    (data / "old.bin").write_bytes(os.urandom(400_000))  # only in the first pack
    assert nb(root, "create", "web", str(data)).returncode == 0
    first = _packs(root)
    (data / "new.bin").write_bytes(os.urandom(300_000))  # in the second pack
    (data / "sub").mkdir()
    (data / "sub" / "small.txt").write_text("small and healthy\n")
    made = json.loads(nb(root, "--json", "create", "web", str(data)).stdout)
    want = _tree(data)
    (bad_pack,) = first
    _damage(bad_pack, how)

    target.mkdir()
    (target / "old.bin").write_bytes(b"what the user had before\n")
    (target / "new.bin").write_bytes(b"stale\n")
    (target / "extra.txt").write_text("not in the backup\n")
    before = _tree(target)
    r = nb(root, "restore", "web", made["id"], str(target), "--overwrite", "always", "--delete")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert "Damaged: 1 file not restored" in r.stdout and "  old.bin: " in r.stdout
    got = _tree(target)
    assert got["old.bin"] == before["old.bin"]  # left as it was: neither torn nor emptied
    assert got["new.bin"] == want["new.bin"] and got["sub/small.txt"] == want["sub/small.txt"]
    assert "extra.txt" not in got  # the plan's other steps were carried out
    assert not [p for p in target.rglob("*") if ".nexus-tmp" in p.name or "nexus" in p.name]

    undo = next(line for line in r.stdout.splitlines() if "Undo with" in line)
    cmd = undo.split("Undo with", 1)[1].split()
    assert cmd[0] == "nexus-backup"
    u = nb(root, *[a for a in cmd[1:] if a not in ("--root", str(root))])
    assert u.returncode == 0, (u.stdout, u.stderr)
    assert _tree(target) == before  # the checkpoint's packs are whole: everything undone

    j = nb(root, "--json", "restore", "web", made["id"], str(tmp_path / "fresh"))
    assert j.returncode == 4
    res = json.loads(j.stdout)
    assert res["verified"] is False and res["files_damaged"] == 1
    assert [d["path"] for d in res["damaged_files"]] == ["old.bin"]
    assert _tree(tmp_path / "fresh") == {k: v for k, v in want.items() if k != "old.bin"}


def test_chunks_no_index_file_knows_cost_only_their_files_and_the_preview_says_so(
    tmp_path: Path,
) -> None:
    """An index file lost (a sync tool's half copy): the files whose chunks it listed are
    named damaged by the dry run and by the restore, never written; every other file is
    restored. Before, the whole restore was refused."""
    root, data, target = tmp_path / "root", tmp_path / "data", tmp_path / "target"
    data.mkdir()
    (data / "old.bin").write_bytes(os.urandom(400_000))
    assert nb(root, "create", "web", str(data)).returncode == 0
    index = root / "backups" / "web" / "index"
    (first,) = list(index.iterdir())
    (data / "new.txt").write_text("healthy\n")
    made = json.loads(nb(root, "--json", "create", "web", str(data)).stdout)
    first.unlink()
    dry = nb(root, "--json", "restore", "web", made["id"], str(target), "--dry-run")
    assert dry.returncode == 4, dry.stderr
    preview = json.loads(dry.stdout)
    assert [d["path"] for d in preview["damaged_files"]] == ["old.bin"]
    assert preview["counts"]["skipped"] == 1 and preview["counts"]["files_create"] == 1
    assert not target.exists() or not any(target.iterdir())
    r = nb(root, "restore", "web", made["id"], str(target))
    assert r.returncode == 4 and "  old.bin: damaged in the repository" in r.stdout, r.stdout
    assert _tree(target) == {"new.txt": b"healthy\n"}
