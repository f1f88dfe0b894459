"""Two processes making a project's first backup at one moment (two cron jobs, the TUI and
a script): both see no project and both make it. Its config is created only if absent, so
one of them makes the project and the other opens it; neither's backup fails, and no key
object to a master key no project has is left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, RestoreRequest
from core.repo import crypto

ROUNDS = 8
WORKERS = 4
SPACING = 0.3  # seconds between rounds: each round's creates start at one instant

WORKER = """
import asyncio, sys, time
from core.manager import BackupManager
from core.models import CreateRequest
from core.repo import crypto
root, data, start, rounds, spacing, encrypt, repo = sys.argv[1:8]
crypto.KDF_MEMORY_KIB, crypto.KDF_ITERATIONS, crypto.KDF_LANES = 64, 1, 1
enc = encrypt == "1"
failed = 0
for i in range(int(rounds)):
    mgr = BackupManager(
        root, repository=repo or None, encrypt=enc, password=(lambda p: "pw") if enc else None
    )
    at = float(start) + i * float(spacing)
    while time.time() < at:
        pass
    try:
        asyncio.run(mgr.create(CreateRequest(project_id=f"r{i}", data_dir=data)))
    except Exception as exc:
        failed += 1
        print(f"round {i}: {type(exc).__name__}: {exc}", file=sys.stderr)
sys.exit(1 if failed else 0)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("store", "encrypt"),
    [("local", False), ("local", True), ("s3", True)],
    ids=["plain", "encrypted", "s3-encrypted"],
)
def test_first_backups_at_one_moment_make_one_project(
    tmp_path: Path, store: str, encrypt: bool, request: pytest.FixtureRequest
) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    root.mkdir()
    data.mkdir()
    (data / "a.txt").write_text("hello\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    repo = ""
    if store == "s3":  # a fresh prefix on the session's SeaweedFS, which enforces If-None-Match
        repo = request.getfixturevalue("s3_url")
        env.update(request.getfixturevalue("s3_env").env())
    start = time.time() + 2.0  # past every worker's start-up
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(root),
                str(data),
                str(start),
                str(ROUNDS),
                str(SPACING),
                "1" if encrypt else "0",
                repo,
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * WORKERS, errors
    mgr = BackupManager(root, repository=repo or None, password=lambda p: "pw")
    for i in range(ROUNDS):
        metas = mgr.list_blocking(f"r{i}")
        assert len(metas) == WORKERS
        assert all(m.status == BackupStatus.COMPLETED for m in metas)
        for m in metas:
            assert asyncio.run(mgr.verify(f"r{i}", m.id)).ok
        repository = mgr._repo(f"r{i}")
        assert len(repository.key_ids()) == (1 if encrypt else 0)
        made = [r for r in mgr.logger.read(f"r{i}") if r.message == "project created"]
        assert len(made) == 1  # said once, by the process that made it


def test_a_key_object_to_another_master_key_is_passed_over(tmp_path: Path, monkeypatch) -> None:
    """A key object that opens with the project's password but wraps another master key (the
    one a process that lost the race to make the project wrote and had not yet deleted, or
    one planted) sorts first: the unlock passes over it, so what is written next opens with
    the project's own key, and the project's backups stay readable. Before, the unlock took
    the first key that opened, and the next backup was sealed under a key nothing opens."""
    from store_helpers import fast_kdf

    fast_kdf(monkeypatch)
    root, data = tmp_path / "root", tmp_path / "data"
    root.mkdir()
    data.mkdir()
    (data / "a.txt").write_text("first\n")

    def mgr() -> BackupManager:
        return BackupManager(root, encrypt=True, password=lambda p: "pw")

    first = asyncio.run(mgr().create(CreateRequest(project_id="web", data_dir=str(data))))
    stray = "0" * 32  # before every random id
    raw = crypto.make_key_object(crypto.new_master_key(), "pw", stray)
    (root / "backups" / "web" / "keys" / stray).write_bytes(raw)
    (data / "b.txt").write_text("second\n")
    second = asyncio.run(mgr().create(CreateRequest(project_id="web", data_dir=str(data))))
    fresh = mgr()
    assert [m.id for m in fresh.list_blocking("web")] == [second.id, first.id]
    for meta in (first, second):
        assert asyncio.run(fresh.verify("web", meta.id)).ok
    out = tmp_path / "out"
    asyncio.run(
        fresh.restore(RestoreRequest(project_id="web", backup_id=second.id, restore_dir=str(out)))
    )
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "a.txt": "first\n",
        "b.txt": "second\n",
    }
