"""Shared fixtures: a real repository root and real directory trees in tmp_path."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from tree_compare import tree_snapshot

from core.manager import BackupManager


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def manager(root: Path) -> BackupManager:
    return BackupManager(root)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A small project: code, an empty dir, a symlink, an executable, a multi-chunk file."""
    d = tmp_path / "project"
    (d / "src" / "pkg").mkdir(parents=True)
    (d / "empty").mkdir()
    (d / "src" / "main.py").write_text("print('hello')\n" * 100)
    (d / "src" / "pkg" / "__init__.py").write_text("")
    (d / "run.sh").write_text("#!/bin/sh\necho run\n")
    (d / "run.sh").chmod(0o755)
    (d / "secret.txt").write_text("s3cret\n")
    (d / "secret.txt").chmod(0o600)
    (d / "données é 日本.txt").write_text("unicode name\n")
    (d / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    os.symlink("src/main.py", d / "link-to-main")
    os.symlink("/nonexistent/target", d / "dangling")
    return d


@pytest.fixture
def tree_of():
    """The tree_snapshot function, for tests to compare trees."""
    return tree_snapshot


#: The stores the engine's main suites (round trip, incremental, dedup and delete, crash
#: recovery, verify and corruption) run on; a new store adds itself here.
ENGINE_STORES = ["local", "memory"]


@pytest.fixture(params=ENGINE_STORES)
def engine(request: pytest.FixtureRequest, root: Path) -> BackupManager:
    """A manager whose repositories live on each engine store in turn (logs under `root`)."""
    if request.param == "local":
        return BackupManager(root)
    if request.param == "memory":
        return BackupManager(root, repository=f"memory://{uuid.uuid4().hex}")
    raise AssertionError(request.param)
