"""Two hosts back up into one project (a shared repository): each backup's parent, the one
whose unchanged entries it reuses without reading them, is its own host's latest, never the
other host's. Another host's files may carry the same inode numbers and times as ours (a
clone of one image) without holding the same bytes.

Each host is a real process in its own UTS namespace (`unshare -u`, its own hostname); the
second pair shares one hostname and is told apart by `--host`, as the README says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rel_harness import REPO_DIR, driver_env

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or shutil.which("hostname") is None,
    reason="needs unshare(1) and hostname(1)",
)


def _on_host(hostname: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cli = " ".join(["exec", sys.executable, "-m", "cli", "--root", str(root), *args])
    done = subprocess.run(
        ["unshare", "-u", "sh", "-c", f"hostname {hostname} && {cli}"],
        capture_output=True,
        text=True,
        env=driver_env(),
        cwd=str(REPO_DIR),
        timeout=120,
    )
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip("no permission to make a UTS namespace here")
    assert done.returncode == 0, done.stderr
    return done


def _backup(hostname: str, root: Path, data: Path, *extra: str) -> dict:
    made = _on_host(
        hostname, root, "--json", "create", "p", str(data), "--type", "incremental", *extra
    )
    return json.loads(made.stdout)


def test_each_hosts_backup_has_its_own_hosts_parent(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("same path on both hosts")
    a1 = _backup("alpha", root, data)
    b1 = _backup("beta", root, data)
    assert (a1["host"], b1["host"]) == ("alpha", "beta")
    assert b1["parent_backup_id"] is None, "beta's first backup took alpha's as its parent"
    a2 = _backup("alpha", root, data)
    b2 = _backup("beta", root, data)
    assert a2["parent_backup_id"] == a1["id"]
    assert b2["parent_backup_id"] == b1["id"]


def test_two_hosts_with_one_hostname_told_apart_by_host(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("cloned")
    one = _backup("web", root, data, "--host", "web-one")
    two = _backup("web", root, data, "--host", "web-two")
    assert two["parent_backup_id"] is None
    again = _backup("web", root, data, "--host", "web-one")
    assert again["parent_backup_id"] == one["id"]
