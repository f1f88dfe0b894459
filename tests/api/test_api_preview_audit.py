"""Audit of the API's restore preview (invariant 5) against its real restore, through the real
server: on a target holding a file where the backup has a directory and back, symlinks to a
file and to a directory outside the target, a hard link to a file outside it, a file of equal
size and mtime but other bytes, a read-only file and a directory made private since, for
every overwrite mode with and without delete: the dry run's counts are the real run's, the
target changes no more than they say, and nothing outside the target changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _source(base: Path) -> Path:
    src = base / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "in.txt").write_bytes(b"inside d")
    (src / "f").write_bytes(b"file f")
    (src / "lf").write_bytes(b"file lf")
    (src / "ld").mkdir()
    (src / "ld" / "x").write_bytes(b"x in ld")
    (src / "h").write_bytes(b"hard content")
    (src / "same").write_bytes(b"AAAA")
    os.utime(src / "same", ns=(10**18, 10**18))
    (src / "ro").write_bytes(b"readonly new")
    os.symlink("f", src / "s")
    (src / "m").mkdir()
    (src / "m" / "k").write_bytes(b"k")
    os.chmod(src / "m", 0o755)
    return src


def _target(t: Path, out: Path) -> None:
    t.mkdir()
    out.mkdir()
    (t / "d").write_bytes(b"a file where the backup has a directory")
    (t / "f").mkdir()
    (t / "f" / "junk").write_bytes(b"junk")
    (out / "victim").write_bytes(b"VICTIM")
    os.symlink(out / "victim", t / "lf")
    (out / "vdir").mkdir()
    (out / "vdir" / "x").write_bytes(b"VX")
    os.symlink(out / "vdir", t / "ld")
    (out / "hl").write_bytes(b"HARD OUTSIDE")
    os.link(out / "hl", t / "h")
    (t / "same").write_bytes(b"BBBB")
    os.utime(t / "same", ns=(10**18, 10**18))
    (t / "ro").write_bytes(b"readonly old")
    os.chmod(t / "ro", 0o444)
    (t / "s").write_bytes(b"a file where the backup has a symlink")
    (t / "m").mkdir()
    (t / "m" / "k").write_bytes(b"k")
    os.chmod(t / "m", 0o700)
    (t / "extra").write_bytes(b"extra")


def _state(top: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirs, names in os.walk(top):
        for n in dirs + names:
            full = Path(dirpath) / n
            st = os.lstat(full)
            body = full.read_bytes() if full.is_file() and not full.is_symlink() else b""
            link = os.readlink(full) if full.is_symlink() else ""
            out[str(full.relative_to(top))] = (st.st_mode, body, link)
    return out


@pytest.mark.parametrize("delete", [False, True], ids=["keep", "delete"])
@pytest.mark.parametrize("overwrite", ["if-changed", "always", "never"])
def test_the_api_dry_run_counts_what_the_restore_then_does(
    api, client, project, backup_of, job_of, overwrite, delete
):
    base = api.allowed / project / f"{overwrite}-{delete}"
    base.mkdir(parents=True)
    meta = backup_of(project, _source(base))
    assert meta["status"] == "completed"
    target, outside = base / "target", api.outside / f"{project}-{overwrite}-{delete}"
    _target(target, outside)
    before, outside_before = _state(target), _state(outside)
    body = {
        "project_id": project,
        "backup_id": meta["id"],
        "restore_dir": str(target),
        "overwrite": overwrite,
        "delete_extra": delete,
        "checkpoint": False,
    }
    dry = client.post("/api/v1/backup/restore", json={**body, "dry_run": True})
    assert dry.status_code == 200, dry.text
    preview = dry.json()
    assert _state(target) == before, "the dry run changed the target"
    started = client.post("/api/v1/backup/restore", json=body)
    assert started.status_code == 202, started.text
    job = job_of(started.json()["job_id"])
    assert job["status"] == "succeeded", job
    done = job["result"]
    assert done["counts"] == preview["counts"]
    assert _state(outside) == outside_before, "something outside the target changed"
    after = _state(target)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    touched = {c["path"] for c in preview["changes"] if c["action"] not in ("unchanged", "skip")}
    beneath = {k for k in changed if any(k.startswith(t + "/") for t in touched)}
    assert changed - beneath <= touched, f"beyond the preview: {changed - beneath - touched}"
    if overwrite == "never":
        assert changed <= {"extra"}, changed
