"""A backup reads only the tree of the directory it opened: its path swapped for a symlink
after the descriptor was opened (the API's confined create), or its subdirectories swapped
for symlinks to the outside by a second thread while it runs, never bring outside files in.
The engine is called directly (core.ops.backup.run_backup), as core/manager.py calls it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from engine_helpers import engine_backup

from core.errors import NexusError
from core.manager import BackupManager
from core.models import CreateRequest
from core.ops.confine import open_dir_beneath
from core.repo import manifest as mf
from core.repo.repository import Repository

P = "confined"
SECRET = b"outside secret: must never be backed up\n"


def _entries(root: Path, backup_id: str) -> tuple[dict, dict[bytes, mf.Entry]]:
    data = Repository(root, P).read_manifest(backup_id)
    return mf.read_header(data), {e.path: e for e in mf.iter_entries(data)}


def _contents(root: Path, entry: mf.Entry) -> bytes:
    repo = Repository(root, P)
    repo.refresh_index()
    return b"".join(repo.read_blobs([bytes.fromhex(h) for h, _n in entry.chunks]))


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    (out / "sub").mkdir(parents=True)
    for rel in ("secret.txt", "f.txt", "sub/f.txt", "sub/secret.txt"):
        (out / rel).write_bytes(SECRET)
    (out / ".nexusignore").write_text("*.txt\n")
    return out


def test_data_dir_swapped_for_a_symlink_after_opening_backs_up_the_original(tmp_path):
    allowed = tmp_path / "allowed"
    data = allowed / "data"
    (data / "sub").mkdir(parents=True)
    (data / "f.txt").write_bytes(b"original top\n")
    (data / "sub" / "f.txt").write_bytes(b"original sub\n" * 1000)
    (data / ".nexusignore").write_text("*.skip\n")
    (data / "x.skip").write_bytes(b"excluded\n")
    outside = _outside(tmp_path)
    fd = open_dir_beneath([allowed], data, what="data_dir")
    try:
        os.rename(data, allowed / "moved-away")
        os.symlink(outside, data)  # the path now leads outside
        root = tmp_path / "repo"
        meta = engine_backup(root, P, data, top_fd=fd)
    finally:
        os.close(fd)
    header, entries = _entries(root, meta.id)
    assert set(entries) == {b".nexusignore", b"f.txt", b"sub", b"sub/f.txt"}
    assert header["excludes"] == ["*.skip"]  # the original's .nexusignore, not the outside's
    assert _contents(root, entries[b"f.txt"]) == b"original top\n"
    assert _contents(root, entries[b"sub/f.txt"]) == b"original sub\n" * 1000


def test_a_symlinked_nexusignore_is_not_followed_when_confined(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    os.symlink(_outside(tmp_path) / ".nexusignore", data / ".nexusignore")
    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
    try:
        meta = engine_backup(tmp_path / "repo", P, data, top_fd=fd)
    finally:
        os.close(fd)
    header, entries = _entries(tmp_path / "repo", meta.id)
    assert header["excludes"] == [] and b"a.txt" in entries


def test_a_data_dir_removed_while_walked_fails_the_backup(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.unlink(data / "f")
        os.rmdir(data)
        with pytest.raises(NexusError, match="removed during the backup"):
            engine_backup(tmp_path / "repo", P, data, top_fd=fd)
    finally:
        os.close(fd)


def _swapper(data: Path, outside: Path, names: list[str], stop: threading.Event) -> int:
    """Swap each of `names` (directories of `data`) for a symlink to `outside` and back,
    over and over, until `stop`; returns how many swaps were made."""
    swaps = 0
    while not stop.is_set():
        for name in names:
            real, parked = data / name, data / f".{name}.parked"
            try:
                os.rename(real, parked)
                os.symlink(outside / "sub" if name == "deep" else outside, real)
                os.unlink(real)
                os.rename(parked, real)
                swaps += 1
            except FileNotFoundError:
                pass
    return swaps


@pytest.mark.parametrize("confined", [False, True])
def test_subdirectories_swapped_for_symlinks_meanwhile_never_bring_outside_files(
    tmp_path, confined
):
    data = tmp_path / "data"
    names = [f"d{i}" for i in range(6)]
    expected: dict[bytes, bytes] = {}
    for name in names:
        for sub in ("", "/sub", "/sub/deep"):
            (data / (name + sub)).mkdir(parents=True)
            for j in range(15):
                rel = f"{name}{sub}/f{j}.txt" if j else f"{name}{sub}/secret.txt"
                content = f"inside {rel}\n".encode() * (1 + j * 40)
                (data / rel).write_bytes(content)
                expected[rel.encode()] = content
    outside = _outside(tmp_path)
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(_swapper(data, outside, names, stop)), daemon=True
    )
    root = tmp_path / "repo"
    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY) if confined else None
    thread.start()
    try:
        metas = [engine_backup(root, P, data, top_fd=fd) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
        if fd is not None:
            os.close(fd)
    assert result[0] > 0
    seen = 0
    for meta in metas:
        _, entries = _entries(root, meta.id)
        for rel, entry in entries.items():
            if entry.kind == mf.SYMLINK:
                continue  # a swapped-in link recorded as a link: never followed
            if entry.kind == mf.FILE:
                first, _, rest = rel.partition(b"/")
                real = first.removeprefix(b".").removesuffix(b".parked") + b"/" + rest
                assert real in expected, rel  # caught while parked: still the inside files
                assert _contents(root, entry) == expected[real], rel
                seen += 1
    assert seen  # something was backed up despite the swaps


async def test_a_symlinked_nexusignore_is_the_users_own_when_not_confined(tmp_path):
    """Outside a confinement the data directory is the user's: a `.nexusignore` linked to a
    shared file is read, as it was before the create opened the directory itself."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    (data / "b.bin").write_text("b")
    os.symlink(_outside(tmp_path) / ".nexusignore", data / ".nexusignore")
    meta = await BackupManager(tmp_path / "repo").create(
        CreateRequest(project_id=P, data_dir=str(data))
    )
    header, entries = _entries(tmp_path / "repo", meta.id)
    assert header["excludes"] == ["*.txt"] and set(entries) == {b".nexusignore", b"b.bin"}
