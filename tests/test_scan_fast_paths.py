"""The scan's fast paths: excludes matched with one regex."""

from __future__ import annotations

import io
import os
import random

import pathspec
import pytest
import zstandard

from core import manifest as mf
from core.models import BackupType, CreateRequest, RestoreRequest
from core.repository import Repository
from core.walker import Excludes

P = "scan"


async def _backup(manager, data_dir, kind=BackupType.INCREMENTAL, excludes=()):
    return await manager.create(
        CreateRequest(
            project_id=P, data_dir=str(data_dir), backup_type=kind, excludes=list(excludes)
        )
    )


async def _restored(manager, meta, tmp_path, tree_of):
    out = tmp_path / f"out-{meta.id}"
    await manager.restore(RestoreRequest(project_id=P, backup_id=meta.id, restore_dir=str(out)))
    return tree_of(out)


def _lines(data: bytes) -> list[bytes]:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read().splitlines(True)


def _install(root, backup_id: str, lines: list[bytes], *, checksum: bool = True) -> None:
    """Replace a backup's manifest; metadata.json's checksum made to match it (or dropped)."""
    repo = Repository(root, P)
    data = zstandard.ZstdCompressor().compress(b"".join(lines))
    repo.write_manifest(backup_id, data)
    meta = repo.read_metadata(backup_id)
    meta.checksum = mf.checksum(data) if checksum else None
    repo.write_metadata(meta)


# --- excludes --------------------------------------------------------------------------


PATTERN_SETS = [
    ["*.tmp"],
    ["*.tmp", "build/", "/top.txt", "logs/**/*.log", "[ab]?.c", "sp ace", "x\\(y"],
    ["node_modules/", "*.pyc", "__pycache__/", "a/**/b", "**/deep", "dir/*.txt"],
    ["*.log", "!keep.log"],  # a negation: pathspec decides
    ["build/", "!build/keep/"],
]


@pytest.mark.parametrize("patterns", PATTERN_SETS)
def test_excludes_match_exactly_as_pathspec(patterns):
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    ex = Excludes(spec)
    assert (ex._match is None) == any(p.startswith("!") for p in patterns)
    rng = random.Random(5)
    parts = ["a", "b", "ab", "x(y", "sp ace", "build", "keep", "logs", "deep", "dir", "top.txt"]
    parts += ["f.tmp", "keep.log", "z.log", "m.pyc", "q.c", "ac.c", "__pycache__", "é.txt"]
    for _ in range(3000):
        path = "/".join(rng.choice(parts) for _ in range(rng.randint(1, 4)))
        for is_dir in (False, True):
            want = spec.match_file(path + "/" if is_dir else path)
            assert ex.excluded(path, is_dir) == want, (patterns, path, is_dir)


async def test_excludes_with_negation_and_nested_dirs(manager, tmp_path, tree_of):
    d = tmp_path / "d"
    (d / "build" / "keep").mkdir(parents=True)
    (d / "src" / "logs").mkdir(parents=True)
    files = {
        "build/out.o": b"object",
        "build/keep/readme": b"kept under build",
        "src/a.log": b"a log",
        "src/keep.log": b"kept log",
        "src/logs/b.log": b"another log",
        "src/main.c": os.urandom(3000),
    }
    for rel, content in files.items():
        (d / rel).write_bytes(content)
    (d / ".nexusignore").write_text("*.log\n!keep.log\n")
    for kind in (BackupType.FULL, BackupType.INCREMENTAL):
        meta = await _backup(manager, d, kind, excludes=["build/*", "!build/keep/"])
        out = await _restored(manager, meta, tmp_path, tree_of)
        assert out[b"src/main.c"][1] == files["src/main.c"]
        assert out[b"src/keep.log"][1] == b"kept log"
        assert out[b"build/keep/readme"][1] == b"kept under build"
        for gone in (b"build/out.o", b"src/a.log", b"src/logs/b.log"):
            assert gone not in out
    assert meta.stats.bytes_read == 0  # the incremental one reused every line
