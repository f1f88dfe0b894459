"""Audit of `run-due` and the copy after each backup, as an attacker and a careless user try
them, through real processes of the CLI: a clock set back after runs stamped ahead
(faketime), a schedule state file damaged in every way a disk or another version leaves it, a
run-due SIGKILLed mid-backup, projects deleted or renamed while run-due goes through the
listing; a copy target in the logs, turned into a link into the repository or into the data
directory between backups, on read-only media. A failed copy never fails or damages the
backup, and says so in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import rel_harness as rel  # noqa: E402

PROJECT = "web"


def _env() -> dict[str, str]:
    env = rel.driver_env()
    for k in [k for k in env if k.startswith("NEXUS_BACKUP")]:
        del env[k]
    return env


def nb(root: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`nexus-backup --root ROOT ARGS` in a process of its own (`prefix`: e.g. faketime)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=str(rel.REPO_DIR),
        timeout=120,
    )


def popen(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=str(rel.REPO_DIR),
    )


def ok(r: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return r


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def backups(root: Path, project: str = PROJECT) -> list[dict]:
    return json.loads(ok(nb(root, "--json", "list", project)).stdout)


def project_summary(root: Path, project: str = PROJECT) -> dict:
    listed = json.loads(ok(nb(root, "--json", "projects")).stdout)
    return next(p for p in listed if p["project_id"] == project)


def pdir(root: Path, project: str = PROJECT) -> Path:
    return root / "backups" / project


@pytest.fixture
def hourly(tmp_path: Path) -> tuple[Path, Path, datetime]:
    """A project backed up once now, then scheduled hourly: (root, data, H), H the first full
    hour after that backup."""
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("first\n")
    ok(nb(root, "create", PROJECT, str(data)))
    ok(nb(root, "policy", "set", PROJECT, "--schedule", "hourly"))
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return root, data, top


# --- 1. run-due and the scheduler --------------------------------------------------------------


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")
def test_a_clock_set_back_after_runs_stamped_ahead_never_stops_the_schedule(hourly) -> None:
    """The machine's clock ran a month ahead (a bad RTC at boot) while run-due ran, then NTP
    set it right: the last run's start is a month ahead. The schedule had stopped for that
    month (`not due (next run <a month ahead>)`); the run owed now runs once, then the
    schedule goes on by the hour."""
    root, data, _h = hourly
    ahead = ok(nb(root, "run-due", prefix=("faketime", "-f", "+30d")))
    assert "succeeded" in ahead.stdout, ahead.stdout
    stamp = json.loads((pdir(root) / "last_run.json").read_text())["started_at"]
    assert datetime.fromisoformat(stamp) > datetime.now(UTC) + timedelta(days=29)
    (data / "a.txt").write_text("changed after the clock was put right\n")
    before = len(backups(root))
    back = ok(nb(root, "run-due"))  # the real clock again
    assert "succeeded" in back.stdout, (back.stdout, back.stderr)
    assert len(backups(root)) == before + 1
    summary = project_summary(root)
    nxt = datetime.fromisoformat(summary["next_run"].replace("Z", "+00:00"))
    assert nxt <= datetime.now(UTC) + timedelta(hours=1, minutes=1), summary
    again = ok(nb(root, "run-due"))  # and once only: the slot is run now
    assert again.stdout == "" and len(backups(root)) == before + 1


STATES = {
    "garbage": b"garbage{",
    "truncated": b'{"started_at": "2026-12-04T0',
    "empty": b"",
    "a list": b"[]",
    "not utf-8": b"\xff\xfe\x00{",
    "a newer version's status": b'{"started_at": "2026-01-01T00:00:00Z", "status": "paused",'
    b' "format": 9}',
    "an error longer than kept": b'{"started_at": "2026-01-01T00:00:00Z", "status": "failed",'
    b' "error": "' + b"x" * 5000 + b'"}',
    "the last year there is": b'{"started_at": "9999-12-31T23:59:59Z", "status": "succeeded"}',
    "a directory": None,
}


@pytest.mark.parametrize("state", list(STATES))
def test_a_damaged_schedule_state_never_stops_run_due_nor_a_listing(hourly, state: str) -> None:
    """last_run.json as a disk, a crash or another version leaves it: `projects` lists the
    project and `run-due` runs the owed slot (judged from the newest backup) or says in one
    line why it cannot, never a traceback (`9999-12-31` was an OverflowError in both)."""
    root, data, h = hourly
    where = pdir(root) / "last_run.json"
    if STATES[state] is None:
        where.mkdir()
    else:
        where.write_bytes(STATES[state])
    ok(nb(root, "projects"))
    before = len(backups(root))
    (data / "a.txt").write_text("second\n")
    r = nb(root, "run-due", "--now", iso(h + timedelta(minutes=1)))
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    if state == "a directory":
        # the run's start cannot be recorded, so no other run-due could tell the slot was
        # taken (I10): not run, one line, exit 1
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert rel.nexus_error_line(r.stderr) and "cannot record the run" in r.stderr
        assert len(backups(root)) == before
    else:
        ok(r)
        assert "succeeded" in r.stdout, r.stdout
        assert json.loads(where.read_bytes())["status"] == "succeeded"
        assert len(backups(root)) == before + 1
    ok(nb(root, "projects"))


@pytest.mark.slow  # a backup big enough to be killed half-way
def test_a_run_due_killed_mid_backup_leaves_nothing_that_blocks_the_next(
    hourly, tmp_path: Path
) -> None:
    """SIGKILL while the scheduled backup writes its packs: the faces read the run failed
    ("interrupted"), no lock is left that holds anything up, the slot it started is not run
    twice, the next slot runs and records the killed backup FAILED."""
    root, data, h = hourly
    for i in range(120):
        (data / f"f{i:03}.bin").write_bytes(os.urandom(1 << 20))
    at = h + timedelta(minutes=1)
    proc = popen(root, "run-due", "--now", iso(at))
    stamp = at.strftime("%Y%m%d-%H%M%S")
    packs = len(rel.pack_names(root, PROJECT))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        started = list(pdir(root).glob(f"backup_{stamp}-*/metadata.json"))
        if started and len(rel.pack_names(root, PROJECT)) > packs:  # packs are being written
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the backup ended before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    killed = next(pdir(root).glob(f"backup_{stamp}-*")).name.removeprefix("backup_")

    summary = project_summary(root)
    assert summary["last_run"]["status"] == "failed", summary
    assert "interrupted" in summary["last_run"]["error"]
    same_slot = ok(nb(root, "run-due", "--now", iso(at + timedelta(minutes=5))))
    assert same_slot.stdout == ""  # the slot was started: not run twice
    nxt = ok(nb(root, "run-due", "--now", iso(at + timedelta(hours=1))))
    assert "succeeded" in nxt.stdout, nxt.stdout
    listed = {b["id"]: b for b in backups(root)}
    assert listed[killed]["status"] == "failed", listed[killed]
    assert sum(b["status"] == "completed" for b in listed.values()) == 2
    assert not list((pdir(root) / "run-locks").glob("*"))
    assert not list((pdir(root) / "locks").glob("*"))


@pytest.mark.parametrize("change", ["delete-project", "rename-project"])
def test_a_project_deleted_or_renamed_while_run_due_goes_through_the_listing(
    tmp_path: Path, change: str
) -> None:
    """Project `a`'s run ends with a command (its on_success, a real process) that deletes or
    renames project `b`, which run-due listed before it began: `b` is said in one line, never
    brought back under its old name, and the project it became is left whole."""
    root = tmp_path / "root"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.txt").write_text(name)
        ok(nb(root, "create", name, str(tmp_path / name)))
    cli = f"{sys.executable} -m cli --root {root}"
    command = {
        "delete-project": f"cd {rel.REPO_DIR} && {cli} delete-project b --yes",
        "rename-project": f"cd {rel.REPO_DIR} && {cli} rename-project b c",
    }[change]
    ok(nb(root, "policy", "set", "a", "--schedule", "hourly", "--on-success", command))
    ok(nb(root, "policy", "set", "b", "--schedule", "hourly"))
    at = datetime.now(UTC).replace(minute=1, second=0, microsecond=0) + timedelta(hours=1)
    r = nb(root, "run-due", "--now", iso(at))
    assert "Traceback" not in r.stderr and r.returncode in (0, 1), r
    assert r.stdout.startswith("a: scheduled run") and "succeeded" in r.stdout
    said = r.stderr.strip().splitlines()  # b's turn: "unknown project 'b'", or nothing
    assert len(said) <= 1 and rel.nexus_error_line(r.stderr), r.stderr
    assert all("'b'" in ln for ln in said), said
    assert not pdir(root, "b").exists(), "run-due brought the project back"
    if change == "rename-project":
        assert [x["status"] for x in backups(root, "c")] == ["completed"]
        second = ok(nb(root, "run-due", "--now", iso(at + timedelta(minutes=2))))
        assert "c: scheduled run" in second.stdout and not pdir(root, "b").exists()


async def test_a_scheduled_backup_never_makes_a_project_again(tmp_path: Path) -> None:
    """The scheduler backs up with make_project=False: a project deleted after run-due listed
    it (its settings read, its turn not yet come) is NotFound, and no directory, config or
    log of it is made; a backup asked for by a person still makes a new project."""
    from core.errors import NotFound
    from core.manager import BackupManager
    from core.models import CreateRequest

    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("x\n")
    root = tmp_path / "root"
    mgr = BackupManager(root)
    req = CreateRequest(project_id="gone", data_dir=str(data))
    with pytest.raises(NotFound):
        await mgr.create(req, make_project=False)
    assert not pdir(root, "gone").exists()
    assert not any((root / "logs").glob("gone_*"))
    made = await mgr.create(req)
    assert made.status.value == "completed" and pdir(root, "gone").is_dir()


# --- 2. the copy after each backup -------------------------------------------------------------


@pytest.fixture
def copied(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A project with copy-to `off/twin` and one backup copied there: (root, data, target)."""
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    ok(nb(root, "create", PROJECT, str(data)))
    target = tmp_path / "off" / "twin"
    target.parent.mkdir()
    ok(nb(root, "settings", PROJECT, "copy-to", str(target)))
    ok(nb(root, "create", PROJECT, str(data)))
    assert any((target / "backups" / PROJECT / "packs").rglob("*"))
    return root, data, target


def _one_warning(r: subprocess.CompletedProcess[str]) -> str:
    """The backup's own exit code for a copy that failed (3), and one warning line."""
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: warning: copy to"), lines
    assert "Traceback" not in r.stderr
    return lines[0]


def _completed(root: Path) -> list[str]:
    return [b["id"] for b in backups(root) if b["status"] == "completed"]


def test_a_copy_target_in_the_logs_or_the_root_is_refused_when_set(tmp_path: Path) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    ok(nb(root, "create", PROJECT, str(data)))
    before = rel.tree_state(root / "backups", files_only=True)
    for to in (root / "logs", root / "logs" / "twin", root, root / "backups" / PROJECT / "x"):
        r = nb(root, "settings", PROJECT, "copy-to", str(to))
        assert r.returncode == 2 and rel.nexus_error_line(r.stderr), (to, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert rel.tree_state(root / "backups", files_only=True) == before
    assert [p.name for p in (root / "logs").iterdir() if p.is_dir()] == []


def test_a_copy_target_turned_into_a_link_into_the_repository_copies_nothing(copied) -> None:
    """Between two backups the off-site directory becomes a link to the root (`off` ->
    root): the copy would write the twin's objects beside the repository's. Refused at the
    copy, one line; the backup itself is complete and nothing lands in the root."""
    root, data, target = copied
    shutil.rmtree(target.parent)
    target.parent.symlink_to(root)
    before = sorted(p.name for p in root.iterdir())
    (data / "b.txt").write_text("bravo\n")
    line = _one_warning(nb(root, "create", PROJECT, str(data)))
    assert "this repository" in line
    assert sorted(p.name for p in root.iterdir()) == before
    assert len(_completed(root)) == 3
    ok(nb(root, "verify", PROJECT, "latest"))


def test_a_copy_target_moved_into_the_data_directory_is_never_backed_up(copied) -> None:
    """The twin moved into the data directory and its old path made a link to it (I13): the
    next backups store the data, never the copies of the backups before them."""
    root, data, target = copied
    inside = data / "mirror"
    target.rename(inside)
    target.symlink_to(inside)
    for i in range(2):
        (data / f"n{i}.txt").write_text(str(i))
        ok(nb(root, "create", PROJECT, str(data)))
    names = ok(nb(root, "ls", PROJECT, "latest")).stdout.split()
    assert "mirror" not in names and "n1.txt" in names, names
    assert any((inside / "backups" / PROJECT / "packs").rglob("*"))  # the copy went on


def test_a_copy_target_on_read_only_media_leaves_every_backup_whole(copied, mount_tmpfs) -> None:
    """The off-site disk mounted read-only (after a copy landed there, and before): the
    backup completes and restores, the copy is one warning line, exit 3, and the twin's
    objects are as they were; a scheduled run says it in its copy step."""
    root, data, _target = copied
    media = mount_tmpfs("media", "16m")
    ok(nb(root, "settings", PROJECT, "copy-to", str(media / "twin")))
    ok(nb(root, "create", PROJECT, str(data)))
    assert subprocess.run(["mount", "-o", "remount,ro", str(media)]).returncode == 0
    twin = rel.tree_state(media)
    (data / "b.txt").write_text("bravo\n")
    line = _one_warning(nb(root, "create", PROJECT, str(data)))
    assert "read-only file system" in line and "[Errno" not in line, line  # said in words
    assert rel.tree_state(media) == twin
    ok(nb(root, "policy", "set", PROJECT, "--schedule", "hourly"))
    at = datetime.now(UTC).replace(minute=1, second=0, microsecond=0) + timedelta(hours=1)
    run = nb(root, "run-due", "--now", iso(at))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "scheduled run failed: copy: copy to" in lines[0], lines
    assert rel.tree_state(media) == twin
    done = _completed(root)
    assert len(done) == 5
    out = data.parent / "out"
    ok(nb(root, "restore", PROJECT, done[0], str(out)))
    assert (out / "b.txt").read_text() == "bravo\n"


def test_a_copy_target_that_is_the_data_directory_itself_is_never_backed_up(
    tmp_path: Path,
) -> None:
    """copy-to names the data directory itself: the twin's `backups/web` lands inside it.
    The walk skipped the twin's directory, but that is the data directory, which is never
    skipped, so every backup stored the copies of the ones before it (I13)."""
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    ok(nb(root, "create", PROJECT, str(data)))
    ok(nb(root, "settings", PROJECT, "copy-to", str(data)))
    ok(nb(root, "create", PROJECT, str(data)))
    assert any((data / "backups" / PROJECT / "packs").rglob("*")), "the copy was made"
    (data / "b.txt").write_text("bravo\n")
    made = json.loads(ok(nb(root, "--json", "create", PROJECT, str(data))).stdout)
    names = ok(nb(root, "ls", "-R", PROJECT, made["id"])).stdout.split()
    assert {"a.txt", "b.txt"} <= set(names), names
    assert [n for n in names if n.startswith("backups/")] in ([], ["backups/"]), names
    assert made["files_count"] == 2
