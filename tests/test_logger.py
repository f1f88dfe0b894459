"""BackupLogger, parse_line and LogTail on real files, with real concurrent writer processes."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.logger import BackupLogger, LogRecord, LogTail, normalize_level, parse_line

REPO = Path(__file__).resolve().parents[1]


def test_line_format_and_round_trip(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path)
    rec = log.info("web", "create", "started\nsecond line\r\\n literal", backup_id="b1")
    line = log.path_for("web").read_text()
    assert line.count("\n") == 1
    assert line.endswith(" INFO    create   backup=b1 started\\nsecond line\\r\\\\n literal\n")
    ms = rec.time.microsecond // 1000
    assert line.startswith(rec.time.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z INFO ")
    parsed = parse_line(line, "web")
    assert parsed == rec
    assert rec.format() + "\n" == line


def test_control_characters_escaped_and_restored(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path)
    nasty = "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g\x1b[31mred\x00\x7f\tTab \\x41 \\u2028 \udc80z é"
    rec = log.warning("web", "create", nasty)
    text = log.path_for("web").read_text(errors="strict")
    assert len(text.splitlines()) == 1 and "\x1b" not in text and "\t" in text
    [back] = log.read("web")
    assert back.message == nasty == rec.message


def test_exact_example_line() -> None:
    rec = LogRecord(
        time=datetime(2026, 11, 29, 3, 12, 3, 123000, tzinfo=UTC),
        level="INFO",
        project_id="web",
        operation="create",
        backup_id=None,
        message="hello",
    )
    assert rec.format() == "2026-11-29T03:12:03.123Z INFO    create   backup=- hello"
    back = parse_line(rec.format())
    assert back is not None and back.backup_id is None and back.time == rec.time


def test_levels_and_file_per_day(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path)
    log.log("web", "warn", "delete", "w")
    log.log("web", logging.ERROR, "delete", "e")
    log.log("web", logging.DEBUG, "delete", "d")
    log.log("web", "info", "delete", "i", backup_id="x")
    log.warning("api", "verify", "other project")
    assert [r.level for r in log.read("web")] == ["WARNING", "ERROR", "DEBUG", "INFO"]
    assert [r.message for r in log.read("web", level="WARNING")] == ["w", "e"]
    assert [r.message for r in log.read("web", level=logging.INFO, limit=2)] == ["e", "i"]
    assert [r.project_id for r in log.read("api")] == ["api"]
    today = datetime.now(UTC).date()
    assert log.path_for("web") == tmp_path / "logs" / f"web_{today.isoformat()}.log"
    assert log.read("web", date(2000, 1, 1)) == []
    assert len(log.read("web", today.isoformat())) == 4
    with pytest.raises(ValueError):
        normalize_level("loud")


def test_permissions(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path / "root")
    log.info("web", "create", "x")
    assert stat.S_IMODE((tmp_path / "root" / "logs").stat().st_mode) == 0o700
    assert stat.S_IMODE(log.path_for("web").stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 65, "a..b"])
def test_rejects_unsafe_project_ids(tmp_path: Path, bad: str) -> None:
    log = BackupLogger(tmp_path)
    with pytest.raises(InvalidInput):
        log.info(bad, "create", "x")
    with pytest.raises(InvalidInput):
        log.read(bad)
    with pytest.raises(ValueError):  # as check_id raises: callers may catch either
        log.path_for(bad)
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def test_read_skips_garbage_and_torn_lines(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path)
    log.info("web", "create", "one")
    path = log.path_for("web")
    with open(path, "ab") as f:
        f.write(b"2026-11-29T03:12:03.1\xff\xfe garbage\n\n")
        f.write(b"not a log line at all\n")
    log.error("web", "create", "two")
    with open(path, "ab") as f:
        f.write(b"2026-11-29T03:12:03.123Z INFO    create   backup=- torn")  # no newline yet
    assert [r.message for r in log.read("web")] == ["one", "two"]


def test_subscribe_and_unsubscribe(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path)
    seen: list[LogRecord] = []

    def broken(_rec: LogRecord) -> None:
        raise RuntimeError("viewer crashed")

    unsub_broken = log.subscribe(broken)
    unsub = log.subscribe(seen.append)
    rec = log.info("web", "create", "a", backup_id="b1")
    unsub()
    unsub()  # idempotent
    unsub_broken()
    log.info("web", "create", "b")
    assert seen == [rec]
    assert [r.message for r in log.read("web")] == ["a", "b"]


def test_thread_safe(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path)
    count: list[int] = []
    log.subscribe(lambda r: count.append(1))

    def work(n: int) -> None:
        for i in range(300):
            log.info("web", "create", f"t{n} {i}" + "x" * (i % 50))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = log.read("web")
    assert len(records) == 1800 == len(count)


WRITER = """
import sys
from core.logger import BackupLogger
root, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
log = BackupLogger(root)
for i in range(n):
    # some lines far beyond PIPE_BUF / a page, with newlines to escape
    size = 9000 if i % 97 == 0 else i % 300
    log.info("web", "create", f"{tag} {i} " + "y" * size + "\\nend", backup_id=tag)
"""


def test_concurrent_processes_append_intact_lines(tmp_path: Path) -> None:
    n, procs = 1500, 4
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n), f"p{k}"], cwd=REPO)
        for k in range(procs)
    ]
    for w in writers:
        assert w.wait(timeout=60) == 0
    log = BackupLogger(tmp_path)
    raw = log.path_for("web").read_bytes().split(b"\n")
    assert raw[-1] == b""
    lines = raw[:-1]
    assert len(lines) == n * procs
    assert all(parse_line(ln.decode()) is not None for ln in lines)
    records = log.read("web")
    assert len(records) == n * procs
    for k in range(procs):
        mine = [r for r in records if r.backup_id == f"p{k}"]
        assert [int(r.message.split()[1]) for r in mine] == list(range(n))  # in order, no loss
        for r in mine:
            i = int(r.message.split()[1])
            size = 9000 if i % 97 == 0 else i % 300
            assert r.message == f"p{k} {i} " + "y" * size + "\nend"


PARTIAL_WRITER = """
import os, sys
path = sys.argv[1]
line = lambda m: f"2026-11-29T03:12:03.123Z INFO    create   backup=- {m}\\n".encode()
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
two = line("two")
os.write(fd, line("one") + two[:20])
print("step1", flush=True); sys.stdin.readline()
os.write(fd, two[20:-1])
print("step2", flush=True); sys.stdin.readline()
os.write(fd, b"\\n" + line("three"))
print("step3", flush=True); sys.stdin.readline()
"""


def test_tail_follows_other_process_with_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "web_2026-11-29.log"
    path.parent.mkdir()
    tail = LogTail(path)
    assert tail.read_new() == []  # not there yet
    p = subprocess.Popen(
        [sys.executable, "-c", PARTIAL_WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdin is not None
        got = []
        for step in ("step1", "step2", "step3"):
            assert p.stdout.readline().strip() == step
            got.append([(r.message, r.project_id) for r in tail.read_new()])
            p.stdin.write("\n")
            p.stdin.flush()
        assert p.wait(timeout=10) == 0
    finally:
        p.kill()
    assert got == [[("one", "web")], [], [("two", "web"), ("three", "web")]]
    assert tail.read_new() == []


def test_tail_live_while_logger_process_writes(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path)
    tail = log.tail("web")
    n = 3000
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n), "live"], cwd=REPO)
    got: list[LogRecord] = []
    deadline = time.monotonic() + 60
    while w.poll() is None and time.monotonic() < deadline:
        got += tail.read_new()
        time.sleep(0.005)
    assert w.wait(timeout=5) == 0
    got += tail.read_new()
    assert [int(r.message.split()[1]) for r in got] == list(range(n))


def test_tail_truncation_rotation_and_from_end(tmp_path: Path) -> None:
    log = BackupLogger(tmp_path)
    for i in range(3):
        log.info("web", "create", f"old{i}")
    path = log.path_for("web")
    assert [r.message for r in LogTail(path, from_end=True).read_new()] == []
    tail = LogTail(path)
    assert [r.message for r in tail.read_new()] == ["old0", "old1", "old2"]

    os.truncate(path, 0)  # truncated: starts over
    log.info("web", "create", "after-truncate")
    assert [r.message for r in tail.read_new()] == ["after-truncate"]

    rotated = path.with_suffix(".new")
    rotated.write_text(log.read("web")[0].format() + "\n")
    os.replace(rotated, path)  # replaced by another inode, possibly as big: starts over
    log.info("web", "create", "after-rotate")
    assert [r.message for r in tail.read_new()] == ["after-truncate", "after-rotate"]

    path.unlink()  # removed: empty until it comes back
    assert tail.read_new() == []
    log.info("web", "create", "recreated")
    assert [r.message for r in tail.read_new()] == ["recreated"]

    follower = LogTail(path, from_end=True)
    log.info("web", "create", "new")
    assert [r.message for r in follower.read_new()] == ["new"]


STEP_WRITER = """
import os, sys
logs = sys.argv[1]
day1, day2 = os.path.join(logs, "web_2026-11-29.log"), os.path.join(logs, "web_2026-11-30.log")
line = lambda m: f"2026-11-29T03:12:03.123Z INFO    create   backup=- {m}\\n".encode()

def append(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)

def step(name):
    print(name, flush=True)
    sys.stdin.readline()

append(day1, line("a1") + line("a2"))
step("written")
append(day1, line("a3"))  # the old day still gets a late line
append(day2, line("b1") + line("b1 is longer than what follows the truncation"))
step("next day")
os.truncate(day2, 0)
append(day2, line("b2"))
step("truncated")
append(day2, b"".join(line(f"burst {i:06d}") for i in range(40000)) + line("last"))
step("burst")
os.unlink(day2)
step("removed")
"""


def test_the_follower_against_another_process_across_days_truncation_and_bursts(
    tmp_path: Path,
) -> None:
    """The one follower (the TUI's log pane and BackupLogger.tail) on a file a real second
    process appends to: the day turns (the old file is read to its end, then the new one,
    no reset), the file is truncated (reset, start over), a burst bigger than `max_behind`
    arrives (skip ahead to whole lines, the last one kept), the file goes (reset)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    day = ["2026-11-29"]
    tail = LogTail(
        lambda: logs / f"web_{day[0]}.log", project_id="web", backlog=4096, max_behind=65536
    )
    p = subprocess.Popen(
        [sys.executable, "-c", STEP_WRITER, str(logs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: dict[str, tuple[list[str], bool]] = {}
    try:
        assert p.stdout is not None and p.stdin is not None
        for name in ("written", "next day", "truncated", "burst", "removed"):
            assert p.stdout.readline().strip() == name
            if name == "next day":
                day[0] = "2026-11-30"
            records, reset = tail.read()
            seen[name] = ([r.message for r in records], reset)
            p.stdin.write("\n")
            p.stdin.flush()
        assert p.wait(timeout=10) == 0
    finally:
        p.kill()
    assert seen["written"] == (["a1", "a2"], False)
    assert seen["next day"][0][:2] == ["a3", "b1"] and not seen["next day"][1]
    assert seen["truncated"] == (["b2"], True)
    burst, reset = seen["burst"]
    assert not reset and burst[-1] == "last"
    assert 1000 < len(burst) < 40000  # skipped ahead, to the start of a whole line
    assert all(m.startswith("burst ") for m in burst[:-1])
    assert seen["removed"] == ([], True)
    assert tail.read() == ([], False)
