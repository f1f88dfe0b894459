"""Independent audit of issue #9, invariant 4 under SIGKILL: a `restore --delete --overwrite
always` killed at a random instant, then the user finds the automatic checkpoint in `list`
and restores it (the printed undo) -- the target must be exactly what it was before."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

P = "kill"
EXE = [sys.executable, "-m", "cli"]
RESTORE_OPTS = ("--overwrite", "always", "--delete")


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*EXE, "--root", str(root), *args], capture_output=True, text=True, timeout=120
    )


def _state(top: Path) -> dict[str, tuple[str, bytes]]:
    """What a user compares: every entry's kind and bytes (or link target)."""
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirs, names in os.walk(top):
        for n in dirs + names:
            full = Path(dirpath) / n
            rel = str(full.relative_to(top))
            if full.is_symlink():
                out[rel] = ("l", os.readlink(full).encode())
            elif full.is_dir():
                out[rel] = ("d", b"")
            else:
                out[rel] = ("f", full.read_bytes())
    return out


@pytest.mark.slow
def test_killed_restore_with_delete_is_undone_by_its_checkpoint(tmp_path):
    rng = random.Random(int(os.environ.get("NEXUS_REL_SEED", "0")) or 4242)
    root = tmp_path / "repo"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(150):
        (src / "sub" / f"f{i}").write_bytes(os.urandom(rng.randint(1, 40_000)))
    (src / "link").symlink_to("sub")
    assert _cli(root, "create", P, str(src)).returncode == 0
    backup_id = json.loads(_cli(root, "--json", "list", P).stdout)[0]["id"]
    for round_ in range(4):
        target = tmp_path / f"t{round_}"
        (target / "sub").mkdir(parents=True)
        for i in range(0, 150, 2):
            (target / "sub" / f"f{i}").write_bytes(os.urandom(5000))
        for i in range(120):
            (target / "sub" / f"extra{i}").write_bytes(os.urandom(3000))
        (target / "link").mkdir()  # a directory where the backup has a symlink
        (target / "link" / "inside").write_text("in a directory the restore replaces")
        before = _state(target)
        known = {b["id"] for b in json.loads(_cli(root, "--json", "list", P).stdout)}
        proc = subprocess.Popen(
            [*EXE, "--root", str(root), "restore", P, backup_id, str(target), *RESTORE_OPTS],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        listing = json.loads(_cli(root, "--json", "list", P).stdout)
        checkpoints = [
            b["id"]
            for b in listing
            if b["id"] not in known and b["type"] == "checkpoint" and b["status"] == "completed"
        ]
        print(f"round {round_}: checkpoint {'yes' if checkpoints else 'no'}, ")
        if not checkpoints:
            # killed before the checkpoint completed: the target must be untouched
            after = {k: v for k, v in _state(target).items() if ".nexus" not in k}
            assert after == before, f"round {round_}: changed without a checkpoint"
            continue
        mid = _state(target)
        changed = sum(mid.get(k) != v for k, v in before.items())
        print(f"  the kill left {changed} of {len(before)} entries changed")
        r = _cli(
            root, "restore", P, checkpoints[0], str(target),
            "--overwrite", "always", "--delete", "--no-checkpoint",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert _state(target) == before, f"round {round_}: the undo did not undo"
