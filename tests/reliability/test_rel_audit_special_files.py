"""Special and odd files, attacked as an auditor and a careless user would, with the program
run as a real process under a timeout (a hang fails the test instead of the suite):

- in the data directory: a fifo, a socket and a character device (never opened: a scheduled
  run-due blocked on a fifo would hold up every project), a file grown without end by another
  process while it is read (a sparse one, grown by ftruncate far faster than any read: the
  read must end), a file truncated while read, hard links, a file replaced by a directory;
- in the restore target: a fifo, a socket and a device at the name of a file being restored
  and at a name the backup does not hold, under every --overwrite policy, with and without
  --delete and a checkpoint: nothing blocks, nothing is written through a fifo, the dry run
  names exactly what the real run then does (design I5), and an if-changed comparison of a
  file another process grows without end ends;
- every reader (verify, diff, find, ls, cat, dump) of a backup made of such a tree: an exit
  code, no traceback, no hang.

What is checked is what a user checks: bytes, kinds of files, exit codes, one line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import rel_harness as h

P = "sp"
TIMEOUT = 60


def _cli(root: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=h.driver_env(),
        cwd=str(h.REPO_DIR),
        timeout=timeout,
    )


def _no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr


# A writer that waits until the process PID has FILE open, then makes the file 64 MiB longer
# every millisecond with ftruncate (a hole: no disk is used), far faster than any read, until
# STOP exists or the file is 4 TiB long.
GROWER = r"""
import os, sys, time
pid, path, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
real = os.path.realpath(path)
def holds():
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == real:
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False
print("READY", flush=True)
while not holds() and not os.path.exists(stop):
    time.sleep(0.0005)
fd = os.open(path, os.O_WRONLY)
size = os.fstat(fd).st_size
while not os.path.exists(stop) and size < 4 << 40:
    size += 64 << 20
    os.ftruncate(fd, size)
    time.sleep(0.001)
"""


def _sparse(path: Path, head: bytes, size: int = 256 << 20) -> None:
    """A file of `size` bytes, `head` then a hole: long enough to read (a quarter second or
    so) that the grower sees it open and grows it before the read is over."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


@contextlib.contextmanager
def _grown_while_open(path: Path, stop: Path, proc: subprocess.Popen) -> Iterator[None]:
    grower = subprocess.Popen(
        [sys.executable, "-c", GROWER, str(proc.pid), str(path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert grower.stdout is not None and grower.stdout.readline().strip() == "READY"
        yield
    finally:
        stop.touch()
        try:
            grower.wait(timeout=10)
        except subprocess.TimeoutExpired:
            grower.kill()
            grower.wait()


def _popen_cli(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=h.driver_env(),
        cwd=str(h.REPO_DIR),
    )


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr); exit code None when it did not end within `timeout`."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err


# --- the data directory -------------------------------------------------------------------------


def test_a_file_grown_without_end_while_backed_up_is_skipped_and_the_backup_ends(tmp_path):
    """Another process grows a file faster than any read (a hole, by ftruncate, 64 GiB/s):
    the backup had read on until its end, which never came (nor did the backup, which also
    stored whatever it read). Read no further than the file's size when the read began, it
    ends, says the file kept changing, and backs up the rest."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    grown = data / "grown.log"
    _sparse(grown, os.urandom(1 << 20))
    root = tmp_path / "root"
    stop = tmp_path / "stop"
    proc = _popen_cli(root, "--json", "create", P, str(data))
    with _grown_while_open(grown, stop, proc):
        code, out, err = _finish(proc, 40)
    assert code is not None, "the backup never ended while a file grew without end"
    assert code == 3, (code, out[-400:], err)
    assert "Traceback" not in err, err
    meta = json.loads(out)
    assert meta["status"] == "completed"
    warned = [w for w in meta["stats"]["warnings"] if "grown.log" in w]
    assert len(warned) == 1 and "while being read" in warned[0], meta["stats"]["warnings"]
    target = tmp_path / "out"
    r = _cli(root, "restore", P, "latest", str(target))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "a.txt").read_text() == "a"
    assert not (target / "grown.log").exists()


# --- the restore target -------------------------------------------------------------------------


def test_if_changed_over_a_file_grown_without_end_in_the_target_ends(tmp_path):
    """if-changed hashes a target file of the entry's size to see whether it holds the
    backup's bytes. Another process grows it without end once the restore has it open: the
    hash read on until its end, and the restore, dry run included, never ended. Read no
    further than one byte past the size it had, it is told apart (a longer file is not the
    backup's) and overwritten."""
    data = tmp_path / "data"
    data.mkdir()
    _sparse(data / "f.bin", os.urandom(1 << 20))
    content = (data / "f.bin").read_bytes()
    root = tmp_path / "root"
    assert _cli(root, "create", P, str(data)).returncode == 0
    for dry in (True, False):
        target = tmp_path / f"t-{dry}"
        target.mkdir()
        _sparse(target / "f.bin", os.urandom(1 << 20))  # the entry's size: it is hashed
        stop = tmp_path / f"stop-{dry}"
        args = ["restore", "--no-checkpoint", P, "latest", str(target)]
        proc = _popen_cli(root, *args[:1], *(["--dry-run"] if dry else []), *args[1:])
        with _grown_while_open(target / "f.bin", stop, proc):
            code, out, err = _finish(proc, 30)
        assert code is not None, f"the restore (dry run: {dry}) never ended"
        assert code == 0 and "Traceback" not in err, (code, out, err)
        if not dry:
            assert (target / "f.bin").read_bytes() == content


def test_diff_live_verify_content_over_a_file_grown_without_end_ends(tmp_path):
    """`diff --live --verify-content` hashes a data file of the backed-up size: grown without
    end by another process once open, it was read for ever. Read no further than one byte
    past the size the scan saw, it is told changed and the command ends."""
    data = tmp_path / "data"
    data.mkdir()
    _sparse(data / "f.bin", os.urandom(1 << 20))
    root = tmp_path / "root"
    assert _cli(root, "create", P, str(data)).returncode == 0
    proc = _popen_cli(root, "diff", "--live", "--verify-content", P, "latest")
    with _grown_while_open(data / "f.bin", tmp_path / "stop", proc):
        code, out, err = _finish(proc, 30)
    assert code is not None, "diff --verify-content never ended"
    assert "Traceback" not in err, err
    assert "f.bin" in out, (code, out, err)
