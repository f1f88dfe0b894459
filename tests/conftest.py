"""Shared fixtures: a real repository root and real directory trees in tmp_path."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage.seaweed import SeaweedServer, SeaweedUnavailable
from storage.seaweed import start as start_seaweed
from store_helpers import fast_kdf
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


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """A real S3 server (SeaweedFS) for this session, or this xdist worker: started on first
    use, killed at the end. One that cannot start fails the tests that need it (never a
    skip: the S3 tests run in every CI run)."""
    try:
        server = start_seaweed()
    except SeaweedUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(
    seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> SeaweedServer:
    """The AWS variables pointing at the session's server, and a cache of this test's own,
    for this test only."""
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEXUS_BACKUP_CACHE_DIR", str(tmp_path / "s3-cache"))
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return seaweed


@pytest.fixture
def s3_url(s3_env: SeaweedServer) -> str:
    """`s3://BUCKET/PREFIX` of a fresh, empty prefix on the session's server (env set)."""
    return s3_env.url(f"t-{secrets.token_hex(6)}")


#: The stores the engine's main suites (round trip, incremental, dedup and delete, crash
#: recovery, verify and corruption) run on; a new store adds itself here.
ENGINE_STORES = ["local", "memory", "s3", "encrypted"]


@pytest.fixture(params=ENGINE_STORES)
def engine(request: pytest.FixtureRequest, root: Path) -> BackupManager:
    """A manager whose repositories live on each engine store in turn (logs under `root`)."""
    if request.param == "local":
        return BackupManager(root)
    if request.param == "memory":
        return BackupManager(root, repository=f"memory://{uuid.uuid4().hex}")
    if request.param == "s3":  # a fresh prefix on the session's SeaweedFS
        return BackupManager(root, repository=request.getfixturevalue("s3_url"))
    if request.param == "encrypted":  # local, every project encrypted (a cheap Argon2id)
        fast_kdf(request.getfixturevalue("monkeypatch"))
        return BackupManager(root, password=lambda _p: "engine password", encrypt=True)
    raise AssertionError(request.param)
