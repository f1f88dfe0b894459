"""Invariant I12 for the logs: nothing is written, renamed or removed through a link under
`{root}/logs`. Each test plants a link where the logger writes (the day's file, `logs/`
itself, a hard link to a file elsewhere) or swaps `logs/` for a link over and over while a
backup logs, and checks the victim's file stays byte for byte what it was, while the
operation that logs still succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from metrics_helpers import nb  # the CLI in a process of its own

from core.logger import BackupLogger, LogRecord, LogRefused, LogTail
from core.manager import BackupManager
from core.models import CreateRequest

PRECIOUS = b"export PATH=/usr/bin  # a stranger's file\n"


def _days() -> list[str]:
    """Today and tomorrow (UTC): a test running across midnight still meets its link."""
    today = datetime.now(UTC).date()
    return [today.isoformat(), (today + timedelta(days=1)).isoformat()]


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def _stranger(tmp_path: Path, project: str = "web") -> Path:
    """A stranger's directory holding files of the very names the logger writes."""
    victim = tmp_path / "stranger"
    victim.mkdir()
    for day in _days():
        (victim / f"{project}_{day}.log").write_bytes(PRECIOUS)
    (victim / ".bashrc").write_bytes(PRECIOUS)
    return victim


def _plant(logs: Path, victim: Path, how: str, project: str = "web") -> None:
    logs.mkdir(parents=True, exist_ok=True)
    for day in _days():
        name = logs / f"{project}_{day}.log"
        if how == "symlink":
            name.symlink_to(victim / ".bashrc")
        else:
            os.link(victim / ".bashrc", name)


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_link_at_the_log_files_name_is_never_written_through(tmp_path: Path, how: str) -> None:
    victim = _stranger(tmp_path)
    before = _files(victim)
    log = BackupLogger(tmp_path / "root")
    _plant(log.logs_dir, victim, how)
    log.info("web", "create", "a line that must go nowhere")
    assert _files(victim) == before
    assert isinstance(log.last_error, LogRefused)
    assert "is a symbolic link (or hard link): nothing is written through it" in str(log.last_error)
    assert str(log.path_for("web")) in str(log.last_error)
    # another project's file beside it is written as ever
    log.info("db", "create", "fine")
    assert [r.message for r in log.read("db")] == ["fine"]


def test_logs_a_link_to_a_strangers_directory_is_never_written_through(tmp_path: Path) -> None:
    """The root may be a link (the user named it): followed. `logs/` below it is not."""
    victim = _stranger(tmp_path)
    before = _files(victim)
    (tmp_path / "disk").mkdir()
    (tmp_path / "disk" / "logs").symlink_to(victim)
    root = tmp_path / "root"
    root.symlink_to(tmp_path / "disk")
    log = BackupLogger(root)
    log.info("web", "create", "to the stranger's file of this name?")
    log.info("other", "create", "a new file in the stranger's directory?")
    assert _files(victim) == before
    assert isinstance(log.last_error, LogRefused)
    assert f"{root / 'logs'} is a symbolic link" in str(log.last_error)
    (tmp_path / "disk" / "logs").unlink()
    log.info("web", "create", "through the root's link")
    assert [r.message for r in BackupLogger(tmp_path / "disk").read("web")] == [
        "through the root's link"
    ]
    assert (tmp_path / "disk" / "logs").stat().st_mode & 0o777 == 0o700


def test_a_fifo_at_the_log_files_name_neither_blocks_nor_is_written(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path / "root")
    log.logs_dir.mkdir(parents=True)
    for day in _days():
        os.mkfifo(log.logs_dir / f"web_{day}.log")
    writer = threading.Thread(target=log.info, args=("web", "create", "blocks on a fifo?"))
    writer.start()
    writer.join(timeout=2)
    blocked = writer.is_alive()
    if blocked:  # let it go: a reader opens each fifo until it has written
        readers = [os.open(p, os.O_RDONLY | os.O_NONBLOCK) for p in log.logs_dir.iterdir()]
        writer.join(timeout=5)
        for fd in readers:
            os.close(fd)
    assert not blocked
    assert isinstance(log.last_error, LogRefused)


def test_a_fifo_or_a_directory_at_the_log_files_name_never_blocks_a_reader(tmp_path: Path) -> None:
    """The TUI's log pane and the API's log views read the day's file: a fifo planted there
    (no writer ever comes) must read as an empty log at once, as must a directory."""
    log = BackupLogger(tmp_path / "root")
    log.logs_dir.mkdir(parents=True)
    today = log.path_for("web")
    os.mkfifo(today)
    (log.logs_dir / "api_x.log").mkdir()
    got: list[object] = []

    def readers() -> None:
        got.append(log.read("web"))
        got.append(log.tail("web").read())
        got.append(log.tail("web", from_end=True).read())
        got.append(LogTail(log.logs_dir / "api_x.log", backlog=100).read())

    thread = threading.Thread(target=readers, daemon=True)
    thread.start()
    thread.join(timeout=5)
    if thread.is_alive():  # let it go: a writer opens the fifo
        fd = os.open(today, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(timeout=5)
        pytest.fail("a reader blocked on a fifo at the log's name")
    assert got == [[], ([], False), ([], False), ([], False)]


def test_rename_and_remove_in_a_linked_logs_directory_touch_nothing(tmp_path: Path) -> None:
    """A project rename takes its logs along, a demo removes them: with `logs/` a link
    into a stranger's directory holding files of those names, neither is renamed or
    removed."""
    victim = _stranger(tmp_path, "old")
    before = _files(victim)
    root = tmp_path / "root"
    root.mkdir()
    (root / "logs").symlink_to(victim)
    log = BackupLogger(root)
    log.rename_project("old", "new")
    assert _files(victim) == before
    assert isinstance(log.last_error, LogRefused)
    with pytest.raises(LogRefused, match="symbolic link"):
        log.remove("old", _days()[0])
    assert _files(victim) == before


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_link_at_a_log_files_name_is_left_by_a_rename_and_removed_alone(
    tmp_path: Path, how: str
) -> None:
    """A rename leaves a planted link under its name (the new name would write through it);
    a removal takes the link's name away, never its target's bytes."""
    victim = _stranger(tmp_path, "old")
    before = _files(victim)
    log = BackupLogger(tmp_path / "root")
    _plant(log.logs_dir, victim, how, "old")
    log.append(LogRecord(datetime(2026, 1, 2, tzinfo=UTC), "INFO", "old", "x", None, "mine"))
    log.rename_project("old", "new")
    left = sorted(p.name for p in log.logs_dir.iterdir())
    assert left == ["new_2026-01-02.log", *(f"old_{d}.log" for d in _days())]
    assert [r.message for r in log.read("new", "2026-01-02")] == ["mine"]  # its own moved
    assert isinstance(log.last_error, LogRefused)
    for day in _days():
        log.remove("old", day)
    assert [p.name for p in log.logs_dir.iterdir()] == ["new_2026-01-02.log"]
    assert _files(victim) == before


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_backup_with_a_link_at_its_log_succeeds_and_says_so_once(
    tmp_path: Path, data_dir: Path, how: str
) -> None:
    """The CLI's backup is made (exit 0, listed); its log lines go nowhere; one warning line
    says why; the victim is untouched."""
    victim = _stranger(tmp_path)
    before = _files(victim)
    root = tmp_path / "root"
    _plant(root / "logs", victim, how)
    proc = nb(root, "create", "web", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    assert _files(victim) == before
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 1, proc.stderr
    assert warnings[0].startswith("nexus-backup: warning: ")
    assert "symbolic link (or hard link): nothing is written through it" in warnings[0]
    listed = nb(root, "list", "web")
    assert listed.returncode == 0 and "completed" in listed.stdout.lower(), listed.stdout


_SWAPPER = """
import os, sys
logs, victim, parked, stop, count = sys.argv[1:6]
swaps = attempts = 0
while not os.path.exists(stop):
    attempts += 1
    try:
        os.rename(logs, parked + str(attempts))  # whatever directory is there goes away
    except OSError:
        pass
    try:
        os.symlink(victim, logs)
        swaps += 1
        os.unlink(logs)
    except OSError:
        pass
    if swaps % 10 == 0:
        with open(count + ".tmp", "w") as f:
            f.write(str(swaps))
        os.replace(count + ".tmp", count)
"""
#: The swaps the swapper makes before the test stops it (however loaded the machine is).
SWAPS = 200


def _swaps(count: Path) -> int:
    try:
        return int(count.read_text() or 0)
    except FileNotFoundError:
        return 0


async def test_logs_swapped_for_a_link_over_and_over_while_a_backup_logs(
    tmp_path: Path, data_dir: Path
) -> None:
    """Another process moves `logs/` away and puts a link into a stranger's directory in its
    place, thousands of times, while backups log and a thread logs in a tight loop: lines
    land in a real logs directory or nowhere, never in the stranger's files."""
    victim = _stranger(tmp_path)
    before = _files(victim)
    root = tmp_path / "root"
    mgr = BackupManager(root)
    await mgr.create(CreateRequest(project_id="web", data_dir=str(data_dir)))
    stop, count = tmp_path / "stop", tmp_path / "count"
    argv = [str(root / "logs"), str(victim), str(tmp_path / "parked"), str(stop), str(count)]
    swapper = subprocess.Popen([sys.executable, "-c", _SWAPPER, *argv])
    done = threading.Event()

    def hammer() -> None:
        log = BackupLogger(root)
        while not done.is_set():
            log.info("web", "create", "x" * 100)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for i in range(3):
            (data_dir / f"new{i}.txt").write_text(f"change {i}\n")
            await mgr.create(CreateRequest(project_id="web", data_dir=str(data_dir)))
        deadline = time.monotonic() + 30
        while _swaps(count) < SWAPS and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        done.set()
        thread.join(timeout=10)
        stop.write_text("")
        swapper.wait(timeout=10)
    assert _swaps(count) >= SWAPS  # the link was really there, over and over
    assert _files(victim) == before
    assert len(await mgr.list("web")) == 4
