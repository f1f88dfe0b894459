"""Retention from the command line, run for real in subprocesses: policy set/show/clear,
forget (table and --json, dry run), protect, undelete, create --time and its retention line,
bad input as one line, and SIGKILL during forget and its reclaim."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import NotFound
from core.manager import BackupManager
from core.models import RestoreRequest
from core.ops.progress import OperationContext
from core.repo.repository import POLICY
from tests.test_cli import REPO, _env, nb, ok

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


def content(when: datetime) -> bytes:
    return f"backup of {when.isoformat()}\n".encode() * 500


def create_at(root: Path, data: Path, when: datetime, *extra: str) -> subprocess.CompletedProcess:
    for old in data.iterdir():
        old.unlink()
    (data / "f.txt").write_bytes(content(when))
    return nb(root, "create", "p", str(data), "--time", when.isoformat(), *extra)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def seed(root: Path, data: Path, days: int, **tags: str) -> list[str]:
    """Backups on `days` consecutive days, made in this process (fast); their ids."""
    from core.models import CreateRequest

    mgr, ids = BackupManager(root), []
    for day in range(days):
        when = T0 + timedelta(days=day)
        for old in data.iterdir():
            old.unlink()
        (data / "f.txt").write_bytes(content(when))
        req = CreateRequest(
            project_id="p", data_dir=str(data), created_at=when, tags={"n": str(day), **tags}
        )
        ids.append(mgr.create_blocking(req, OperationContext("create", "p", None)).id)
    return ids


def test_forget_prints_every_backup_with_its_reasons_and_json(tmp_path, data):
    root = tmp_path / "root"
    seed(root, data, 4)
    table = ok(nb(root, "forget", "p", "--keep-last", "2", "--keep-tag", "n=0", "--dry-run"))
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "STATUS", "ACTION", "REASONS"]
    rows = [line.split(None, 4) for line in lines[1:5]]
    assert [r[3] for r in rows] == ["keep", "keep", "remove", "keep"]
    assert rows[0][4] == "last 1/2, newest" and rows[3][4] == "tag n=0"
    assert rows[2][4] == "no rule keeps it"
    assert "Would remove 1 backup of 4, keeping 3." in table.stdout
    assert "Space their removal frees:" in table.stdout
    res = json.loads(ok(nb(root, "--json", "forget", "p", "--keep-last", "1", "--dry-run")).stdout)
    assert res["dry_run"] and len(res["removed"]) == 3
    assert [d["keep"] for d in res["decisions"]] == [True, False, False, False]
    assert len(json.loads(ok(nb(root, "--json", "list", "p")).stdout)) == 4  # nothing removed


@pytest.mark.parametrize("damage", ["garbage", "missing", "newer"])
def test_forget_says_which_backups_it_could_not_judge_and_keeps_them(tmp_path, data, damage):
    """A backup whose metadata.json cannot be read is judged by no rule: forget keeps it and
    says so (a dry run too, and in --json), never passes over it as if it were not there."""
    root = tmp_path / "root"
    ids = seed(root, data, 3)
    meta = root / "backups" / "p" / f"backup_{ids[2]}" / "metadata.json"
    if damage == "garbage":
        meta.write_bytes(b"\x00not json")
    elif damage == "missing":
        meta.unlink()
    else:
        meta.write_text(meta.read_text().replace('"type": "full"', '"type": "snapshot-v9"'))
    for dry in (["--dry-run"], []):
        r = nb(root, "forget", "p", "--keep-last", "1", *dry)
        assert r.returncode == 0, r.stderr
        warned = [line for line in r.stderr.splitlines() if "warning" in line]
        assert len(warned) == 1 and ids[2] in warned[0] and "cannot be read" in warned[0]
        assert "Traceback" not in r.stderr
    res = json.loads(nb(root, "--json", "forget", "p", "--keep-last", "1").stdout)
    assert res["unreadable"] == [ids[2]]
    assert (root / "backups" / "p" / f"backup_{ids[2]}").is_dir()  # kept, as it was
    listed = [b["id"] for b in json.loads(nb(root, "--json", "list", "p").stdout)]
    assert listed == [ids[1]]  # the newest readable kept; the oldest removed


@pytest.mark.slow  # nine runs of the program
def test_policy_set_show_clear_and_the_retention_line_of_create(tmp_path, data):
    root = tmp_path / "root"
    ok(create_at(root, data, T0))
    shown = ok(nb(root, "policy", "set", "p", "--keep-daily", "7", "--keep-within", "30d"))
    assert "--keep-daily 7" in shown.stdout and "--keep-within 30d" in shown.stdout
    ok(nb(root, "policy", "set", "p", "--keep-last", "1", "--keep-daily", "0", "--grace", "0"))
    policy = json.loads(ok(nb(root, "--json", "policy", "show", "p")).stdout)
    assert (policy["keep_last"], policy["keep_daily"], policy["keep_within"]) == (1, 0, "30d")
    created = ok(create_at(root, data, T0 + timedelta(days=40)))
    assert "Retention  retention kept 1, removed 0, deleted 1, reclaimed" in created.stdout
    ok(nb(root, "policy", "clear", "p"))
    assert "has no retention policy" in ok(nb(root, "policy", "show", "p")).stdout
    created = ok(create_at(root, data, T0 + timedelta(days=41)))
    assert "Retention" not in created.stdout


def _one_error_line(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert text in proc.stderr, proc.stderr


@pytest.mark.slow  # ten runs of the program
def test_bad_input_is_one_line_and_removes_nothing(tmp_path, data):
    root = tmp_path / "root"
    seed(root, data, 3)
    _one_error_line(nb(root, "forget", "p", "--keep-within", "a week"), 2, "invalid duration")
    _one_error_line(nb(root, "forget", "p"), 2, "has no retention policy")
    _one_error_line(nb(root, "policy", "set", "p"), 2, "give at least one --keep")
    _one_error_line(
        nb(root, "forget", "p", "--keep-tag", "env=prod"), 2, "keeps none of the 3 completed"
    )
    (root / "backups" / "p" / POLICY).write_bytes(b"\x00\x01 not json")
    _one_error_line(nb(root, "policy", "show", "p"), 4, "policy.json is damaged")
    _one_error_line(nb(root, "forget", "p", "--dry-run"), 4, "policy.json is damaged")
    # a backup still completes, and says why no retention was applied (exit 3: a warning)
    made = create_at(root, data, T0 + timedelta(days=5))
    assert made.returncode == 3 and "retention not applied" in made.stderr
    assert len(json.loads(ok(nb(root, "--json", "list", "p")).stdout)) == 4
    ok(nb(root, "policy", "clear", "p"))  # a damaged policy can be cleared
    ok(nb(root, "policy", "set", "p", "--keep-last", "2"))


@pytest.mark.slow  # eight runs of the program
def test_protect_undelete_and_delete_of_a_protected_backup(tmp_path, data):
    root = tmp_path / "root"
    ids = list(reversed(seed(root, data, 3)))
    ok(nb(root, "protect", "p", ids[2]))
    assert "Protected     yes" in ok(nb(root, "info", "p", ids[2])).stdout
    _one_error_line(nb(root, "delete", "p", ids[2]), 1, "is protected: unprotect it first")
    done = ok(nb(root, "forget", "p", "--keep-last", "1"))
    assert "Removed 1 backup of 3, keeping 2." in done.stdout
    listed = ok(nb(root, "undelete", "p")).stdout
    assert ids[1] in listed and "RESTORABLE UNTIL" in listed
    assert "Removed       by retention" in ok(nb(root, "info", "p", ids[1])).stdout
    ok(nb(root, "undelete", "p", ids[1]))
    assert len(json.loads(ok(nb(root, "--json", "list", "p")).stdout)) == 3
    ok(nb(root, "unprotect", "p", ids[2]))
    ok(nb(root, "delete", "p", ids[2]))


def _restores(mgr: BackupManager, backup_id: str, when: datetime, tmp: Path) -> bool:
    target = tmp / f"r-{backup_id}-{time.monotonic_ns()}"
    req = RestoreRequest(project_id="p", backup_id=backup_id, restore_dir=str(target))
    mgr.restore_blocking(req, OperationContext("restore", "p", backup_id))
    return (target / "f.txt").read_bytes() == content(when)


@pytest.mark.slow
def test_sigkill_during_forget_and_its_reclaim_never_leaves_a_backup_half_removed(tmp_path, data):
    """Rounds of: more backups, then `forget --keep-last 3` (grace 0: delete and reclaim at
    once, or grace 24h: soft removal) in a real process SIGKILLed a random moment after it
    took its lock. Then,
    as the next start does: every backup is either whole (listed or in grace, restoring its
    exact bytes) or gone without a trace, never damaged; the three newest always restore."""
    root = tmp_path / "root"
    rng = random.Random(int(os.environ.get("NEXUS_SEED", "13")))
    mgr = BackupManager(root)
    when_of: dict[str, datetime] = {}
    day = 0
    killed = 0
    for round_ in range(8):
        for _ in range(6):
            when = T0 + timedelta(days=day)
            day += 1
            for old in data.iterdir():
                old.unlink()
            (data / "f.txt").write_bytes(content(when))
            (data / "noise.bin").write_bytes(rng.randbytes(40_000))
            meta = mgr.create_blocking(
                _create_req(data, when), OperationContext("create", "p", None)
            )
            when_of[meta.id] = when
        grace = "0" if round_ % 2 == 0 else "24"
        cmd = [sys.executable, "-m", "cli", "--root", str(root), "forget", "p"]
        proc = subprocess.Popen(
            [*cmd, "--keep-last", "3", "--grace", grace],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # once its exclusive lock exists the forget is under way: kill it a moment later
        locks = root / "backups" / "p" / "locks"
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if locks.is_dir() and any(locks.iterdir()):
                break
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        fresh = BackupManager(root)
        _check_whole(fresh, when_of, tmp_path)
    assert killed >= 2, "no kill landed while forget ran"


def _create_req(data: Path, when: datetime):
    from core.models import CreateRequest

    return CreateRequest(project_id="p", data_dir=str(data), created_at=when)


def _check_whole(mgr: BackupManager, when_of: dict[str, datetime], tmp: Path) -> None:
    import asyncio

    asyncio.run(mgr.recover("p"))  # what the next writer does first
    repo = mgr._repo("p")
    assert repo.list_metadata()[1] == [], "a backup was left half removed"
    assert not repo.tombstones()
    listed = [m.id for m in mgr.list_blocking("p")]
    removed = {m.id for m in mgr.removed_blocking("p")}
    assert len(listed) >= 3
    for backup_id in sorted(listed)[-3:]:
        assert _restores(mgr, backup_id, when_of[backup_id], tmp)
    for backup_id in when_of:
        try:
            repo.read_metadata(backup_id)
        except NotFound:
            assert backup_id not in repo.backup_ids(deleting=True)
            continue
        assert backup_id in listed or backup_id in removed
    # whatever is still there restores (a sample, to keep the round short)
    for backup_id in sorted(set(listed) | removed)[:: max(1, len(listed) // 3)]:
        assert _restores(mgr, backup_id, when_of[backup_id], tmp)


@pytest.mark.slow
def test_the_retention_benchmark_runs(tmp_path):
    """benchmarks/retention.py at a tiny scale, so that it cannot silently rot."""
    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/retention.py", "--backups", "30", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["backups"] == 30 and result["kept"] + result["removed"] == 30
    assert result["bytes_reclaimed"] > 0 and result["bytes_after"] < result["bytes_before"]
