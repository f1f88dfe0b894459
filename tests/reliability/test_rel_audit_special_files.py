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
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
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
if len(sys.argv) > 4:  # truncate it instead, to that many bytes, once
    os.ftruncate(fd, int(sys.argv[4]))
    sys.exit()
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
def _grown_while_open(
    path: Path, stop: Path, proc: subprocess.Popen, truncate: int | None = None
) -> Iterator[None]:
    """`path` grown without end (or truncated to `truncate` bytes) once `proc` has it open."""
    extra = [] if truncate is None else [str(truncate)]
    grower = subprocess.Popen(
        [sys.executable, "-c", GROWER, str(proc.pid), str(path), str(stop), *extra],
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


@pytest.mark.parametrize("to", [0, 3 << 20])
def test_a_file_truncated_while_backed_up_is_a_state_it_had(tmp_path, to):
    """Truncated by another process (to nothing, or mid-file) once the backup has it open:
    the backup ends and records the file as it stood before or after, never a mix."""
    data = tmp_path / "data"
    data.mkdir()
    head = os.urandom(8 << 20)
    _sparse(data / "f.bin", head)
    before = (data / "f.bin").read_bytes()
    root = tmp_path / "root"
    proc = _popen_cli(root, "--json", "create", P, str(data))
    with _grown_while_open(data / "f.bin", tmp_path / "stop", proc, truncate=to):
        code, out, err = _finish(proc, 40)
    assert code in (0, 3) and "Traceback" not in err, (code, out[-400:], err)
    target = tmp_path / "out"
    r = _cli(root, "restore", P, "latest", str(target))
    assert r.returncode == 0, r.stdout + r.stderr
    if (target / "f.bin").exists():
        assert (target / "f.bin").read_bytes() in (before, head[:to]), "a torn mix was stored"
    else:
        assert any("f.bin" in w for w in json.loads(out)["stats"]["warnings"]), out


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


# Runs, in one process, a dry run then the real restore of every combination named on its
# stdin (JSON: [[target, [args...]], ...]) and prints what each said (JSON), so that a hang
# anywhere fails the one timeout of the test.
MATRIX = r"""
import contextlib, io, json, os, sys
sys.path.insert(0, os.environ["NEXUS_REL_REPO"])
import cli.main
root = sys.argv[1]
out = []
for target, args in json.loads(sys.stdin.read()):
    said = []
    for dry in (["--dry-run"], []):
        buf, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
            code = cli.main.main(["--root", root, "--json", "restore", *dry, *args, target])
        said.append({"code": code, "out": buf.getvalue(), "err": err.getvalue()})
    out.append(said)
print(json.dumps(out))
"""

SPECIALS = ("fifo", "socket", "device")


def _special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))
    else:
        null = os.stat("/dev/null").st_rdev
        os.mknod(path, 0o666 | stat.S_IFCHR, null)


def _kind(path: Path) -> str:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return "gone"
    if stat.S_ISREG(mode):
        return "file"
    return {stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device"}.get(
        stat.S_IFMT(mode), "other"
    )


@pytest.mark.parametrize("kind", SPECIALS)
def test_special_files_in_the_target_under_every_policy(tmp_path, kind):
    """The target holds a fifo, socket or device at the names of two files of the backup
    (`f`: a fifo some process reads; `g`: one nobody opened, whose open would block) and at
    a name the backup lacks (`x`), for each --overwrite policy, with and without --delete and
    a checkpoint. Nothing blocks, nothing is written through the fifo, the real run does
    exactly what its dry run said (I5), a special file is replaced or deleted only where the
    preview said so and only without a checkpoint (which cannot hold it), and a name replaced
    holds the backup's bytes."""
    if kind == "device" and os.geteuid() != 0:
        pytest.skip("mknod of a device needs root")
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_bytes(b"the backup's f\n")
    (data / "g").write_bytes(b"the backup's g\n")
    (data / "keep").write_text("k")
    root = tmp_path / "root"
    assert _cli(root, "create", P, str(data)).returncode == 0
    combos, readers = [], []
    for policy in ("never", "if-changed", "always"):
        for delete in ([], ["--delete"]):
            for checkpoint in ([], ["--no-checkpoint"]):
                target = tmp_path / f"t{len(combos)}"  # short: a socket's path is
                target.mkdir()
                for name in ("f", "g", "x"):
                    _special(target / name, kind)
                if kind == "fifo":  # a reader of f: bytes written through it would arrive
                    readers.append(os.open(target / "f", os.O_RDONLY | os.O_NONBLOCK))
                args = ["--overwrite", policy, *delete, *checkpoint, P, "latest"]
                combos.append((target, args))
    try:
        r = subprocess.run(
            [sys.executable, "-c", MATRIX, str(root)],
            input=json.dumps([[str(t), a] for t, a in combos]),
            capture_output=True,
            text=True,
            env=h.driver_env(),
            timeout=TIMEOUT,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        for fd in readers:
            with contextlib.suppress(BlockingIOError):
                assert os.read(fd, 100) == b"", "bytes were written through the fifo"
    finally:
        for fd in readers:
            os.close(fd)
    for (target, args), (dry, real) in zip(combos, json.loads(r.stdout), strict=True):
        where = " ".join(args)
        for said in (dry, real):
            assert said["code"] in (0, 3), (where, said)
            assert "Traceback" not in said["err"], (where, said["err"])
        plan, done = json.loads(dry["out"]), json.loads(real["out"])
        assert plan["counts"] == done["counts"], (where, plan["counts"], done["counts"])
        actions = {c["path"]: c["action"] for c in plan["changes"]}
        assert actions == {c["path"]: c["action"] for c in done["changes"]}, where
        kinds = {c["path"]: c["kind"] for c in plan["changes"] if c["action"] == "delete"}
        assert set(kinds.values()) <= {"special"}, (where, kinds)  # I5: never "file"
        no_checkpoint = "--no-checkpoint" in args
        for name in ("f", "g", "x"):
            now, action = _kind(target / name), actions.get(name)
            if now == kind:
                assert action in (None, "skip"), (where, name, action)
                continue
            assert no_checkpoint, f"{where}: {name} replaced though no checkpoint can hold it"
            if now == "gone":
                assert action == "delete" and "--delete" in args, (where, name, action)
            else:
                assert now == "file" and action == "overwrite", (where, name, now, action)
                assert (target / name).read_bytes() == (data / name).read_bytes(), where
        if "never" in args:
            assert _kind(target / "f") == _kind(target / "g") == kind, where
        assert (target / "keep").read_text() == "k", where


def test_the_preview_names_a_special_file_it_deletes_as_such(tmp_path):
    """`restore --delete` over a target holding a fifo the backup lacks. With a checkpoint
    (which cannot hold a fifo) the preview and the run say it is skipped, and why; without
    one the preview's line says what it deletes, and the real run deletes it, as said."""
    data, root, target = tmp_path / "data", tmp_path / "root", tmp_path / "t"
    data.mkdir()
    (data / "a").write_text("a")
    assert _cli(root, "create", P, str(data)).returncode == 0
    target.mkdir()
    os.mkfifo(target / "queue")
    for run in (["--dry-run"], []):
        kept = _cli(root, "--json", "restore", P, "latest", str(target), "--delete", *run)
        assert kept.returncode == 0, kept.stderr
        said = {c["path"]: c for c in json.loads(kept.stdout)["changes"]}
        assert said["queue"]["action"] == "skip" and "checkpoint" in said["queue"]["reason"]
        assert _kind(target / "queue") == "fifo"
    dry = _cli(
        root, "restore", P, "latest", str(target), "--delete", "--dry-run", "--no-checkpoint"
    )
    assert dry.returncode == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if "queue" in x)
    assert line.split()[:3] == ["delete", "queue", "(fifo,"], line
    real = _cli(root, "restore", P, "latest", str(target), "--delete", "--no-checkpoint")
    assert real.returncode == 0, real.stderr
    assert not os.path.lexists(target / "queue") and (target / "a").read_text() == "a"


def _odd_tree(data: Path) -> dict[bytes, bytes]:
    """A data directory holding a fifo nobody writes to, a socket, a character device, two
    hard links, and names with a newline, bytes that are not UTF-8 and 255 bytes; returns
    the regular files' bytes by name."""
    data.mkdir()
    files = {
        b"plain.txt": b"plain\n",
        b"new\nline": b"a newline in the name\n",
        b"latin-\xe9\xff": b"not UTF-8\n",
        b"L" * 255: b"255 bytes of name\n",
        b"one": b"hard-linked\n",
    }
    base = os.fsencode(data)
    for name, content in files.items():
        with open(base + b"/" + name, "wb") as f:
            f.write(content)
    os.link(base + b"/one", base + b"/two")
    files[b"two"] = files[b"one"]
    for name, kind in (("queue", "fifo"), ("sock", "socket"), ("null", "device")):
        if kind != "device" or os.geteuid() == 0:
            _special(data / name, kind)
    return files


def test_special_files_in_the_data_directory_and_every_reader_of_the_backup(tmp_path):
    """A backup of a tree with a fifo (a writer's open of it would block for ever), a socket
    and a device never opens them: it ends, says each once (exit 3), and holds every other
    entry byte for byte, the hard links as links. A restore into an empty target makes
    nothing for them; a second backup ends alike; verify, diff
    (of two backups and live, contents hashed), find, ls, cat and dump each end with an exit
    code and no traceback, and cat of a special file's name is one error line."""
    data = tmp_path / "data"
    files = _odd_tree(data)
    specials = [n for n in ("queue", "sock", "null") if os.path.lexists(data / n)]
    root = tmp_path / "root"
    r = _cli(root, "--json", "create", P, str(data))
    assert r.returncode == 3, r.stdout + r.stderr
    meta = json.loads(r.stdout)
    warnings = meta["stats"]["warnings"]
    for name in specials:
        assert sum(w.startswith(f"{name}: skipped special file") for w in warnings) == 1, warnings
    assert len(warnings) == len(specials), warnings
    target = tmp_path / "out"
    r = _cli(root, "restore", P, "latest", str(target))
    assert r.returncode == 0, r.stdout + r.stderr
    got = {os.fsencode(p.name): p.read_bytes() for p in target.iterdir()}
    assert got == files
    assert os.stat(target / "one").st_ino == os.stat(target / "two").st_ino
    assert not any(os.path.lexists(target / n) for n in specials)
    r = _cli(root, "create", P, str(data))
    assert r.returncode == 3, r.stdout + r.stderr
    for args, codes in (
        (["verify", P, "latest"], (0,)),
        (["diff", P, meta["id"], "latest"], (0,)),
        (["diff", "--live", "--verify-content", P, "latest"], (0,)),
        (["find", P, "*"], (0,)),
        (["ls", "-l", "-R", P, "latest"], (0,)),
        (["cat", P, "latest", "plain.txt"], (0,)),
    ):
        r = _cli(root, *args)
        _no_traceback(r)
        assert r.returncode in codes, (args, r.returncode, r.stdout, r.stderr)
        assert not any(n in r.stdout for n in specials if n != "null"), (args, r.stdout)
    for name in specials:
        r = _cli(root, "cat", P, "latest", name)
        _no_traceback(r)
        assert r.returncode != 0 and r.stdout == "", (name, r.returncode, r.stdout)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    dump = subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), "dump", P, "latest"],
        capture_output=True,
        env=h.driver_env(),
        cwd=str(h.REPO_DIR),
        timeout=TIMEOUT,
    )
    assert dump.returncode == 0, dump.stderr
    with tarfile.open(fileobj=io.BytesIO(dump.stdout)) as tar:
        members = {os.fsencode(m.name.removeprefix("./")): m for m in tar.getmembers()}
        assert not any(os.fsencode(n) in members for n in specials)
        for name, content in files.items():
            m = members[name]
            if m.islnk():
                assert files[os.fsencode(m.linkname.removeprefix("./"))] == content
            else:
                assert tar.extractfile(m).read() == content, name  # type: ignore[union-attr]


def _islands(path: Path, size: int, at: list[int]) -> dict[int, bytes]:
    """A sparse file of `size` bytes: holes, and 5000 random bytes at each offset of `at`
    (returned by offset)."""
    written = {}
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in at:
            f.seek(offset)
            written[offset] = os.urandom(min(5000, size - offset))
            f.write(written[offset])
    return written


def test_sparse_files_are_backed_up_and_restored_byte_for_byte(tmp_path):
    """Holes are not read (below), so what is around them must still be exact: data at odd
    offsets between holes of many chunks, a file that starts and one that ends with a hole,
    one that is all hole, restored and compared byte for byte, then verified."""
    data = tmp_path / "data"
    data.mkdir()
    mib = 1 << 20
    _islands(data / "islands", 41 * mib + 7, [0, 9 * mib + 123, 9 * mib + 4000, 30 * mib - 1])
    _islands(data / "hole-first", 20 * mib + 1, [17 * mib + 5])
    _islands(data / "hole-last", 20 * mib, [3])
    _islands(data / "all-hole", 33 * mib, [])
    root = tmp_path / "root"
    r = _cli(root, "create", P, str(data))
    assert r.returncode == 0, r.stdout + r.stderr
    target = tmp_path / "out"
    r = _cli(root, "restore", P, "latest", str(target))
    assert r.returncode == 0, r.stdout + r.stderr
    for p in data.iterdir():
        assert (target / p.name).read_bytes() == p.read_bytes(), p.name
    r = _cli(root, "verify", P, "latest")
    assert r.returncode == 0, r.stdout + r.stderr


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.slow  # a few seconds: 10 GiB of zeros are still hashed for the file's hash
def test_a_sparse_file_of_10_gib_is_read_as_its_data_not_its_holes(tmp_path):
    """A 10 GiB file holding a few KiB: the backup read all 10 GiB of zeros (half a minute
    here) to store 315 bytes. Its holes are now found (SEEK_DATA) and never read: what this
    process reads stays far below the file's size, the repository stays small, and the
    file's recorded hash is the hash of its 10 GiB."""
    data = tmp_path / "data"
    data.mkdir()
    size = 10 << 30
    islands = _islands(data / "disk.img", size, [0, 5_000_000_000, size - 100])
    root = tmp_path / "root"
    before = _rchar()
    code, out, err = h.cli_inproc(["--root", str(root), "--json", "create", P, str(data)])
    read = _rchar() - before
    assert code == 0, (out, err)
    assert read < 256 << 20, f"the backup read {read} bytes of a file of 10 GiB and a few KiB"
    stored = sum(p.stat().st_size for p in (root / "backups").rglob("*") if p.is_file())
    assert stored < 8 << 20, stored
    from core.repo import manifest as mf
    from core.repo.repository import Repository

    repo = Repository(root, P)
    (entry,) = list(mf.iter_entries(repo.read_manifest(json.loads(out)["id"])))
    import blake3

    want, pos, zeros = blake3.blake3(), 0, bytes(64 << 20)
    for offset, written in [*islands.items(), (size, b"")]:  # the file, without reading it
        while pos < offset:
            n = min(len(zeros), offset - pos)
            want.update(zeros[:n])
            pos += n
        want.update(written)
        pos += len(written)
    assert entry.size == size and entry.hash == want.hexdigest()


def test_a_file_whose_read_fails_is_said_once_and_never_deleted_by_a_restore(tmp_path):
    """A file every read of fails with EIO (a live process's /proc/PID/mem, bind-mounted
    over a file of the data directory: a regular file whose read at 0 is an I/O error). The
    backup ends, says so in one warning line (exit 3), and a restore --delete into the data
    directory, dry run and real run, leaves it: the backup saw it and could not hold it."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    (data / "mem").touch()
    sleeper = subprocess.Popen(["sleep", "120"])
    mounted = subprocess.run(
        ["mount", "--bind", f"/proc/{sleeper.pid}/mem", str(data / "mem")], capture_output=True
    )
    try:
        if mounted.returncode:
            pytest.skip(f"cannot bind-mount here: {mounted.stderr.strip()!r}")
        root = tmp_path / "root"
        r = _cli(root, "--json", "create", P, str(data))
        assert r.returncode == 3, r.stdout + r.stderr
        warnings = json.loads(r.stdout)["stats"]["warnings"]
        assert warnings == ["mem: skipped: read error: Input/output error"], warnings
        (data / "later.txt").write_text("made after the backup")
        for dry in (["--dry-run"], []):
            r = _cli(root, "restore", *dry, "--delete", "--no-checkpoint", P, "latest", str(data))
            _no_traceback(r)
            assert r.returncode == 0 and "mem" not in r.stdout, r.stdout + r.stderr
        assert (data / "mem").exists() and not (data / "later.txt").exists()
    finally:
        subprocess.run(["umount", "-l", str(data / "mem")], capture_output=True)
        sleeper.kill()
        sleeper.wait()
