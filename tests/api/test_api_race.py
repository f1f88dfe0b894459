"""A second thread swaps the directory a request names for a symlink leading outside the
allowed directories, between the API's check and the engine's use of it. With `confine_to`
(set by the API on every create and restore) the engine opens the directory beneath an
allowed one without following symlinks, so no backup ever holds the outside files and no
restore ever writes outside."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _clear(path: Path, n: int) -> None:
    """Move away whatever the code under test made at `path` meanwhile (a restore makes its
    missing target), so the swap can go on; it stays inside the allowed directory."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        path.rename(path.with_name(f"{path.name}.made{n}"))


def _put(path: Path, n: int, make: Callable[[], None]) -> None:
    """`make()` the entry at `path`, clearing what the code under test puts there first."""
    for _ in range(1000):
        _clear(path, n)
        try:
            make()
            return
        except OSError as exc:  # made again in between
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                raise
    raise AssertionError(f"could not put {path} in place")


@contextlib.contextmanager
def swapping(path: Path, outside: Path) -> Iterator[list[int]]:
    """While inside, a thread keeps replacing the directory `path` by a symlink to
    `outside` and back; yields the count of swaps done (in a one-item list)."""
    parked = path.with_name(path.name + ".parked")
    stop = threading.Event()
    swaps = [0]
    errors: list[BaseException] = []

    def run() -> None:
        rng = random.Random(9)
        try:
            while not stop.is_set():
                os.rename(path, parked)
                _put(path, swaps[0], lambda: os.symlink(outside, path))
                time.sleep(rng.random() / 500)
                _put(path, swaps[0], lambda: os.rename(parked, path))
                swaps[0] += 1
                time.sleep(rng.random() / 500)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="swapper", daemon=True)
    thread.start()
    try:
        yield swaps
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not errors, errors
    assert path.is_dir() and not path.is_symlink()


def _finished(client, project: str, backup_id: str, poll) -> dict:
    def done() -> dict | None:
        meta = client.get(f"/api/v1/backup/info/{project}/{backup_id}").json()
        return meta if meta["status"] in ("completed", "failed") else None

    return poll(done)


@pytest.mark.slow
def test_data_dir_swapped_for_a_symlink_after_the_check(api, client, project, poll):
    data = api.allowed / project / "data"
    data.mkdir(parents=True)
    (data / "public.txt").write_text("public")
    secret = api.outside / project
    secret.mkdir(parents=True)
    (secret / "secret.txt").write_text("secret")
    mgr = api.app.state.ctx.mgr
    completed = []
    with swapping(data, secret) as swaps:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline or not completed:
            assert time.monotonic() < deadline + 20, "no create got through"
            body = {"project_id": project, "data_dir": str(data)}
            r = client.post("/api/v1/backup/create", json=body)
            assert r.status_code == 202 or 400 <= r.status_code < 500, r.text
            if r.status_code == 202:
                meta = _finished(client, project, r.json()["id"], poll)
                if meta["status"] == "completed":
                    completed.append(meta["id"])
    assert swaps[0] > 0
    for backup_id in completed:
        names = {e.name for e in mgr.browse_blocking(project, backup_id)}
        assert "secret.txt" not in names, f"backup {backup_id} holds the outside directory"


@pytest.mark.slow
def test_restore_dir_swapped_for_a_symlink_after_the_check(
    api, client, project, sample_tree, backup_of, poll, job_of
):
    meta = backup_of(project, sample_tree(api.allowed / project / "src"))
    target = api.allowed / project / "target"
    target.mkdir()
    victim = api.outside / f"{project}-victim"
    victim.mkdir()
    with swapping(target, victim) as swaps:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            body = {
                "project_id": project,
                "backup_id": meta["id"],
                "restore_dir": str(target),
                "overwrite": "always",
                "checkpoint": False,
            }
            r = client.post("/api/v1/backup/restore", json=body)
            assert r.status_code == 202 or 400 <= r.status_code < 500, r.text
            if r.status_code == 202:
                job_of(r.json()["job_id"])
    assert swaps[0] > 0
    assert os.listdir(victim) == [], "a restore wrote outside the allowed directories"
