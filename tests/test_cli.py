"""The `nexus-backup` program, run for real in subprocesses against temporary repositories.

Every test drives `python -m cli` (the same code as the installed console script) on real
directories, reads ids through `--json`, and checks the exit code and that a failure is exactly
one line on stderr, never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.main import main
from cli.progress_bar import ProgressBar, cells, render_line
from core.models import ProgressEvent
from core.query import parse_when

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NEXUS_BACKUP_ROOT", "NEXUS_BACKUP_REPOSITORY", "NEXUS_DEBUG")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def nb(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `nexus-backup --root ROOT ARGS...` and capture its output (stderr is not a tty)."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env or _env(),
        timeout=60,
    )


def ok(proc: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    # Not a terminal: no progress output, no noise on stderr.
    assert proc.stderr == "", proc.stderr
    return proc


def js(proc: subprocess.CompletedProcess, code: int = 0):
    ok(proc, code)
    return json.loads(proc.stdout)


def one_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The failure is exactly one `nexus-backup: error: ...` line on stderr, nothing on stdout."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nexus-backup: error: "), lines[0]
    assert proc.stdout == "", proc.stdout
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


def snapshot(top: Path) -> dict[str, tuple]:
    """Everything a restore must reproduce: kinds, bytes, symlink targets, modes."""
    tree: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(top).as_posix()
            st = path.lstat()
            if path.is_symlink():
                tree[rel] = ("symlink", os.readlink(path))
            elif path.is_dir():
                tree[rel] = ("dir", st.st_mode & 0o7777)
            else:
                tree[rel] = ("file", path.read_bytes(), st.st_mode & 0o7777)
    return tree


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    top = tmp_path / "data"
    (top / "sub" / "deeper").mkdir(parents=True)
    (top / "empty").mkdir()
    (top / "a.txt").write_text("hello\n")
    (top / "naïve ü €.txt").write_text("unicode name\n")
    (top / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (top / "sub" / "deeper" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    (top / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    (top / "exec.sh").chmod(0o755)
    (top / "link").symlink_to("a.txt")
    return top


def create(root: Path, project: str, data_dir: Path, *extra: str, code: int = 0) -> dict:
    return js(nb(root, "--json", "create", project, str(data_dir), *extra), code)


# --------------------------------------------------------------------------------------------
# The program as a whole
# --------------------------------------------------------------------------------------------


def test_import_does_not_pull_textual_or_fastapi():
    code = (
        "import sys, cli.main\n"
        "bad = [m for m in ('textual', 'fastapi', 'uvicorn') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_help_documents_exit_codes(root: Path):
    proc = ok(nb(root, "--help"))
    assert "exit codes" in proc.stdout
    for line in ("0 ", "1 ", "2 ", "3 ", "4 "):
        assert f"\n  {line}" in proc.stdout
    for command in ("create", "restore", "list", "info", "delete", "verify", "projects", "serve"):
        assert command in proc.stdout
    sub = ok(nb(root, "verify", "--help"))
    assert "--quick" in sub.stdout and "--all" in sub.stdout
    assert "130" not in sub.stdout and "'nexus-backup --help'" in sub.stdout  # the table: once


def test_installed_console_script(root: Path):
    script = Path(sys.executable).parent / "nexus-backup"
    if not script.exists():
        pytest.skip("the package is not installed in this interpreter's environment")
    proc = subprocess.run(
        [str(script), "--root", str(root), "info", "../bad", "latest"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    one_error(proc, 2, "project id")


def test_full_cycle(root: Path, data: Path, tmp_path: Path):
    meta = create(root, "proj", data, "--tag", "env=test", "--tag", "k=v=w", "--extra", "who=me")
    bid = meta["id"]
    assert meta["status"] == "completed"
    assert meta["type"] == "full"
    assert meta["tags"] == {"env": "test", "k": "v=w"}
    assert meta["extra"] == {"who": "me"}
    assert meta["files_count"] == 5
    assert meta["checksum"].startswith("blake3:")

    # list: a human table and JSON, with --json before or after the command.
    human = ok(nb(root, "list", "proj")).stdout
    header, row = human.splitlines()[:2]
    assert header.split()[:3] == ["ID", "TYPE", "CREATED"]
    assert bid in row and "full" in row and "completed" in row and "MiB" in row
    assert "ago" in row or "now" in row
    listed = js(nb(root, "list", "proj", "--json"))
    assert [m["id"] for m in listed] == [bid]
    assert js(nb(root, "--json", "list", "proj")) == listed

    projects = js(nb(root, "--json", "projects"))
    assert [p["project_id"] for p in projects] == ["proj"]
    assert projects[0]["backups"] == 1
    human = ok(nb(root, "projects")).stdout
    assert "PROJECT" in human.splitlines()[0] and "proj" in human.splitlines()[1]

    # info: every metadata field of the spec, stats, manifest, parent chain, last verify.
    info = ok(nb(root, "info", "proj", bid)).stdout
    for label in (
        "ID",
        "Project",
        "Type",
        "Status",
        "Created",
        "Completed",
        "Size",
        "Files",
        "Checksum",
        "Parent",
        "Error",
        "Tags",
        "Extra",
        "Stats",
        "Manifest",
        "Parent chain",
        "Last verify",
    ):
        assert any(line.startswith(label + " ") for line in info.splitlines()), label
    assert bid in info and meta["checksum"] in info and "env=test" in info
    latest = js(nb(root, "info", "proj", "latest", "--json"))
    assert latest["id"] == bid and latest["status"] == "completed"  # the spec's fields on top
    assert latest["manifest"]["files"] == 5

    # restore: byte-exact, modes, symlink, empty dir.
    target = tmp_path / "restored"
    res = ok(nb(root, "restore", "proj", bid, str(target))).stdout
    assert "written" in res and "unchanged" in res and "Verified" in res
    assert snapshot(target) == snapshot(data)

    # verify, then delete, then the backup is gone.
    assert "OK" in ok(nb(root, "verify", "proj", bid)).stdout
    result = js(nb(root, "--json", "verify", "proj", bid, "--quick"))
    assert result["ok"] is True and result["quick"] is True
    assert "Deleted" in ok(nb(root, "delete", "proj", bid)).stdout
    one_error(nb(root, "info", "proj", bid), 1, "not found")
    assert js(nb(root, "--json", "list", "proj")) == []


def test_incremental_after_change(root: Path, data: Path, tmp_path: Path):
    full = create(root, "inc", data)
    (data / "a.txt").write_text("changed content\n")
    (data / "new.txt").write_text("brand new\n")
    (data / "sub" / "b.bin").unlink()
    inc = create(root, "inc", data, "--type", "incremental")
    assert inc["type"] == "incremental"
    assert inc["parent_backup_id"] == full["id"]
    stats = inc["stats"]
    assert stats["files_changed"] >= 1
    assert stats["files_new"] >= 1
    assert stats["files_removed"] >= 1
    assert stats["files_unchanged"] >= 2
    assert stats["bytes_read"] < full["stats"]["bytes_read"]

    info = ok(nb(root, "info", "inc", inc["id"])).stdout
    assert full["id"] in info  # the parent chain
    chain = js(nb(root, "--json", "info", "inc", inc["id"]))["parent_chain"]
    assert chain == [full["id"]]

    target = tmp_path / "out"
    ok(nb(root, "restore", "inc", inc["id"], str(target)))
    assert snapshot(target) == snapshot(data)

    # list filters
    assert [m["id"] for m in js(nb(root, "--json", "list", "inc", "--type", "full"))] == [
        full["id"]
    ]
    ids = [m["id"] for m in js(nb(root, "--json", "list", "inc", "--since", "1h"))]
    assert ids == [inc["id"], full["id"]]  # newest first
    assert js(nb(root, "--json", "list", "inc", "--until", "2000-01-01")) == []
    human = ok(nb(root, "list", "inc", "--until", "2000-01-01")).stdout
    assert "No backups" in human


def test_tags_and_search_filters(root: Path, data: Path):
    a = create(root, "tags", data, "--tag", "env=prod")
    b = create(root, "tags", data, "--tag", "env=dev", "--type", "snapshot")
    assert [m["id"] for m in js(nb(root, "--json", "list", "tags", "--tag", "env=prod"))] == [
        a["id"]
    ]
    assert [m["id"] for m in js(nb(root, "--json", "list", "tags", "--type", "snapshot"))] == [
        b["id"]
    ]
    assert len(js(nb(root, "--json", "list", "tags", "--tag", "env"))) == 2
    assert len(js(nb(root, "--json", "list", "tags", "--status", "completed"))) == 2


def test_restore_dry_run_prints_the_engines_exact_counts(root: Path, tmp_path: Path):
    """More entries than the preview lists: the totals are the engine's exact counts, not a
    count of the capped examples ("at least 1000")."""
    top = tmp_path / "many"
    top.mkdir()
    for i in range(1003):
        (top / f"f{i:04}.txt").write_text(f"{i}\n")
    bid = create(root, "many", top)["id"]
    target = tmp_path / "target"
    target.mkdir()
    (target / "stray.txt").write_text("not in the backup\n")
    preview = ok(nb(root, "restore", "many", bid, str(target), "--delete", "--dry-run")).stdout
    total = next(line for line in preview.splitlines() if "in all:" in line)
    assert "in all: 1003 to create, 0 to overwrite (" in total and "1 to delete" in total, total
    assert "at least" not in total
    assert sorted(os.listdir(target)) == ["stray.txt"]  # a dry run changes nothing


def test_restore_dry_run_checkpoint_and_undo(root: Path, data: Path, tmp_path: Path):
    bid = create(root, "rst", data)["id"]
    target = tmp_path / "target"
    ok(nb(root, "restore", "rst", bid, str(target)))
    (target / "a.txt").write_text("local edit\n")
    (target / "extra.txt").write_text("not in the backup\n")
    before = snapshot(target)

    preview = ok(nb(root, "restore", "rst", bid, str(target), "--delete", "--dry-run")).stdout
    assert "Dry run" in preview and "a.txt" in preview and "extra.txt" in preview
    assert "overwrite" in preview and "delete" in preview
    assert snapshot(target) == before  # nothing changed
    dry = js(nb(root, "--json", "restore", "rst", bid, str(target), "--delete", "--dry-run"))
    assert dry["dry_run"] is True
    assert {c["path"] for c in dry["changes"] if c["action"] != "unchanged"} >= {
        "a.txt",
        "extra.txt",
    }

    out = ok(nb(root, "restore", "rst", bid, str(target), "--delete")).stdout
    assert snapshot(target) == snapshot(data)
    undo_line = next(line for line in out.splitlines() if "Undo with" in line)
    undo = shlex.split(undo_line.split("Undo with", 1)[1])
    assert undo[0] == "nexus-backup"
    # Run the printed undo command: the target is back as it was before the restore.
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *undo[1:]],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=60,
    )
    ok(proc)
    assert snapshot(target) == before


# --------------------------------------------------------------------------------------------
# Bad input: one line on stderr, the right exit code
# --------------------------------------------------------------------------------------------


def test_bad_inputs(root: Path, data: Path, tmp_path: Path):
    bid = create(root, "good", data)["id"]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")

    one_error(nb(root, "info", "nosuchproject", "latest"), 1, "nosuchproject")
    one_error(nb(root, "list", "nosuchproject"), 1, "nosuchproject")
    one_error(nb(root, "info", "good", "nosuchbackup"), 1, "not found")
    one_error(nb(root, "restore", "good", "nosuchbackup", str(tmp_path / "t")), 1, "nosuchbackup")
    one_error(nb(root, "delete", "good", "nosuchbackup"), 1, "nosuchbackup")
    one_error(nb(root, "verify", "good", "nosuchbackup"), 1, "nosuchbackup")
    one_error(nb(root, "create", "good", str(tmp_path / "missing")), 2, "missing", "no such")
    one_error(nb(root, "create", "good", str(a_file)), 2, "a-file", "not a directory")
    one_error(nb(root, "restore", "good", bid, str(a_file)), 2, "a-file")

    # Usage errors found by the parser (more of them in-process below).
    one_error(nb(root, "create", "../evil", str(data)), 2, "project id")
    one_error(nb(root, "create", "good", str(data), "--tag", "a,b=1"), 2, "--tag", "','")
    one_error(nb(root, "create", "good", str(data), "--type", "weekly"), 2, "--type", "weekly")
    # pydantic validation: one line naming the field.
    one_error(nb(root, "create", "good", str(data), "--name", ""), 2, "name")

    # Nothing of the above created anything.
    assert [m["id"] for m in js(nb(root, "--json", "list", "good"))] == [bid]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["create", "a/b", "DATA"], ["project id"]),
        (["info", "good", "../x"], ["backup id"]),
        (["create", "good", "DATA", "--tag", "=v"], ["--tag"]),
        (["create", "good", "DATA", "--tag", "k" * 100 + "=v"], ["--tag", "tag key"]),
        (["list", "good", "--since", "last tuesday"], ["--since"]),
        (["list", "good", "--until", "2026-02-30"], ["--until"]),
        (["list", "good", "--status", "fine"], ["--status"]),
        (["restore", "good", "b1", "x", "--overwrite", "maybe"], ["--overwrite"]),
        (["verify", "good"], ["--all"]),
        (["verify", "good", "b1", "--all"], ["--all"]),
        (["create", "good"], ["does not exist yet", "DATA_DIR"]),
        (["frobnicate"], ["frobnicate"]),
        (["list", "good", "--bogus"], ["--bogus"]),
        (["serve", "--port", "70000"], ["--port"]),
        (["serve", "--token", "a", "--token-file", "f"], ["--token"]),
    ],
)
def test_usage_errors(
    root: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needles: list[str],
):
    args = [str(data) if a == "DATA" else a for a in args]
    assert main(["--root", str(root), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: error: "), captured.err
    for needle in needles:
        assert needle.lower() in lines[0].lower()
    assert not (root / "backups").exists()  # nothing was done


@pytest.mark.skipif(IS_ROOT, reason="root reads a chmod 000 directory anyway")
def test_unreadable_data_dir(root: Path, tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "f").write_text("x")
    locked.chmod(0)
    try:
        one_error(nb(root, "create", "p", str(locked)), 1, "permission denied")
    finally:
        locked.chmod(0o755)


# --------------------------------------------------------------------------------------------
# Exit codes 3 (files skipped) and 4 (damage)
# --------------------------------------------------------------------------------------------


def test_a_path_that_is_not_utf8_is_one_clear_line_and_writes_nothing(
    root: Path, data: Path, tmp_path: Path
) -> None:
    """The data directory's and a restore target's own paths are stored and shown as text:
    one that is not UTF-8 is refused in one line (exit 2), nothing made; names inside the
    tree may be any bytes, and restore as they were."""

    def run(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "cli", "--root", str(root), *args],
            capture_output=True,
            cwd=REPO,
            env=_env(),
            timeout=60,
        )

    inside = os.fsencode(data) + b"/name-\xfe.txt"
    with open(inside, "wb") as f:
        f.write(b"odd name\n")
    create(root, "p", data)
    odd_src = os.fsencode(tmp_path) + b"/src-\xff"
    os.mkdir(odd_src)
    odd_out = os.fsencode(tmp_path) + b"/out-\xff"
    for args, field in (
        (("create", "q", odd_src), "data_dir"),
        (("restore", "p", "latest", odd_out), "restore_dir"),
    ):
        proc = run(*args)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 2, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"{field}: the path is not valid UTF-8" in err, err
    assert not os.path.exists(odd_out)
    assert "q" not in {p.name for p in (root / "backups").iterdir()}
    out = tmp_path / "out"
    restored = run("restore", "p", "latest", str(out))
    assert restored.returncode == 0, restored.stderr
    with open(os.fsencode(out) + b"/name-\xfe.txt", "rb") as f:
        assert f.read() == b"odd name\n"


def test_exit_3_when_a_special_file_is_skipped(root: Path, data: Path):
    # A fifo cannot be backed up: it is skipped with a warning (works as root, unlike chmod).
    os.mkfifo(data / "a-fifo")
    proc = nb(root, "--json", "create", "skip", str(data))
    meta = js(proc, 3)
    assert meta["status"] == "completed"
    assert any("a-fifo" in w for w in meta["stats"]["warnings"])
    os.mkfifo(data / "odd\nfifo")  # a newline in a name never breaks the one-line output
    human = nb(root, "create", "skip", str(data))
    ok(human, 3)
    assert "a-fifo" in human.stdout and "skipped" in human.stdout
    assert "odd\\nfifo" in human.stdout
    assert not any(line.startswith("fifo") for line in human.stdout.splitlines())


@pytest.mark.skipif(IS_ROOT, reason="root reads a chmod 000 file anyway")
def test_exit_3_when_a_file_is_unreadable(root: Path, data: Path):
    secret = data / "secret.txt"
    secret.write_text("no")
    secret.chmod(0)
    try:
        meta = create(root, "unread", data, code=3)
    finally:
        secret.chmod(0o644)
    assert any("secret.txt" in w for w in meta["stats"]["warnings"])


def test_exit_4_when_a_pack_byte_is_corrupted(root: Path, tmp_path: Path):
    top = tmp_path / "only-big"
    top.mkdir()
    (top / "victim.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    bid = create(root, "dmg", top)["id"]
    packs = [p for p in (root / "backups" / "dmg" / "packs").rglob("*") if p.is_file()]
    assert packs
    pack = max(packs, key=lambda p: p.stat().st_size)
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))

    proc = nb(root, "verify", "dmg", bid)
    ok(proc, 4)
    assert "DAMAGED" in proc.stdout and "victim.bin" in proc.stdout
    result = js(nb(root, "--json", "verify", "dmg", bid), 4)
    assert result["ok"] is False
    assert [d["path"] for d in result["damaged_files"]] == ["victim.bin"]
    every = js(nb(root, "--json", "verify", "dmg", "--all"), 4)
    assert [r["ok"] for r in every] == [False]
    # The last verify shows in info.
    assert "DAMAGED" in ok(nb(root, "info", "dmg", bid)).stdout


# --------------------------------------------------------------------------------------------
# Errors that are not the user's: interrupts, internal errors, missing entry points
# --------------------------------------------------------------------------------------------


def _script(body: str, *args: str, env: dict[str, str] | None = None, **kw):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(body), *args],
        cwd=REPO,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_ctrl_c_cancels_the_operation_then_exits_130(tmp_path: Path):
    marker = tmp_path / "marker"
    body = """
        import asyncio, sys
        import cli.main as cli

        class SlowManager:
            async def projects(self):
                print("started", flush=True)
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    open(sys.argv[1], "w").write("cancelled")
                    raise
                return []

        cli.Context.manager = property(lambda self: SlowManager())
        sys.exit(cli.main(["--root", sys.argv[2], "projects"]))
    """
    proc = _script(body, str(marker), str(tmp_path / "repo"))
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr.strip() == "nexus-backup: error: interrupted"
    assert marker.read_text() == "cancelled"  # the running coroutine was cancelled first


def test_ctrl_c_marks_a_real_backup_failed(root: Path, tmp_path: Path):
    top = tmp_path / "sparse"
    top.mkdir()
    for i in range(4):  # large but sparse: costs no disk, takes the engine a while to hash
        with open(top / f"zeros{i}.bin", "wb") as f:  # (its holes are not read: design I17)
            f.truncate(16 << 30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "--root", str(root), "create", "slow", str(top)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not list((root / "backups" / "slow").glob("backup_*/metadata.json")):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the backup finished before the interrupt arrived")
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr.strip() == "nexus-backup: error: interrupted"
    listed = js(nb(root, "--json", "list", "slow"))
    assert [m["status"] for m in listed] == ["failed"]
    assert "cancel" in (listed[0]["error_message"] or "")


def test_internal_error_is_one_line_unless_debugging(tmp_path: Path):
    body = """
        import sys
        import cli.main as cli
        from cli.commands import projects

        def boom(ctx):
            raise RuntimeError("kaboom")

        projects.cmd_projects = boom
        sys.exit(cli.main(["--root", sys.argv[1], "projects"]))
    """
    proc = _script(body, str(tmp_path))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert stderr.splitlines() == [
        "nexus-backup: internal error: RuntimeError: kaboom "
        "(run with NEXUS_DEBUG=1 for the traceback)"
    ]
    proc = _script(body, str(tmp_path), env=_env(NEXUS_DEBUG="1"))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "Traceback" in stderr and "kaboom" in stderr


@pytest.mark.parametrize(
    ("blocked", "args"),
    [
        ("tui.app", ["tui"]),
        ("tui.app", []),
        ("tui.app", ["demo"]),
        ("api.server", ["serve", "--port", "9"]),
    ],
)
def test_missing_entry_point_is_one_error_line(tmp_path: Path, blocked: str, args: list[str]):
    body = """
        import json, sys
        sys.modules[sys.argv[1]] = None  # as if the module did not exist
        import cli.main as cli
        sys.exit(cli.main(["--root", sys.argv[2], *json.loads(sys.argv[3])]))
    """
    proc = _script(body, blocked, str(tmp_path), json.dumps(args))
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1, (stdout, stderr)
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: error: "), stderr
    assert "not available" in lines[0]


def test_serve_and_tui_get_their_arguments(tmp_path: Path):
    body = """
        import json, sys, types
        calls = []
        server = types.ModuleType("api.server")
        server.serve = lambda root, **kw: calls.append(("serve", str(root), kw)) or 0
        app = types.ModuleType("tui.app")
        app.run = lambda root, **kw: calls.append(("tui", str(root), kw)) or 0
        sys.modules["api.server"] = server
        sys.modules["tui.app"] = app
        import cli.main as cli
        r = sys.argv[1]
        codes = [
            cli.main(["--root", r, "serve", "--port", "9000", "--token-file", sys.argv[2],
                      "--allow-dir", "/srv/data"]),
            cli.main(["--root", r]),
            cli.main(["--root", r, "demo"]),
        ]
        print(json.dumps({"codes": codes, "calls": calls}, default=str))
    """
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-s3cret-s3cret\n")
    proc = _script(body, str(tmp_path / "repo"), str(token_file))
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["codes"] == [0, 0, 0]
    serve, tui, demo = result["calls"]
    assert serve[0] == "serve" and serve[1] == str(tmp_path / "repo")
    assert serve[2] == {
        "host": "127.0.0.1",
        "port": 9000,
        "token": "s3cret-s3cret-s3cret",
        "allowed_dirs": ["/srv/data"],
        "max_running": 2,
        "password": None,  # none given: read once at start, never asked (issue 12)
        "password_files": [],  # where it was read from: kept from every restore
        "encrypt": False,
        "metrics_public": False,  # /metrics behind the token (issue 15)
    }
    assert tui == ["tui", str(tmp_path / "repo"), {"demo": False}]
    assert demo[0] == "tui" and demo[2] == {"demo": True}
    assert demo[1] != str(tmp_path / "repo")  # the demo never fills the user's repository


def test_root_from_environment(tmp_path: Path, data: Path):
    env = _env(NEXUS_BACKUP_ROOT=str(tmp_path / "envroot"))
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "--json", "create", "envp", str(data)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    meta = js(proc)
    assert (tmp_path / "envroot" / "backups" / "envp" / f"backup_{meta['id']}").is_dir()


# --------------------------------------------------------------------------------------------
# In-process: main() return codes, date parsing, the progress line
# --------------------------------------------------------------------------------------------


def test_main_returns_codes(capsys: pytest.CaptureFixture[str]):
    assert main(["--help"]) == 0
    assert main(["create", "../x", "/tmp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "project id" in err


def test_parse_when():
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert parse_when("7d", now=now) == now - timedelta(days=7)
    assert parse_when("12h", now=now) == now - timedelta(hours=12)
    assert parse_when("30m", now=now) == now - timedelta(minutes=30)
    assert parse_when("2w", now=now) == now - timedelta(weeks=2)
    assert parse_when("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    end = parse_when("2026-11-01", end=True)
    assert end.date().day == 1 and end.hour == 23 and end.tzinfo is not None
    assert parse_when("2026-11-01T03:04:05") == datetime(2026, 11, 1, 3, 4, 5, tzinfo=UTC)
    assert parse_when("2026-11-01T03:04:05Z") == datetime(2026, 11, 1, 3, 4, 5, tzinfo=UTC)
    plus_one = parse_when("2026-11-01T03:04:05+01:00")
    assert plus_one == datetime(2026, 11, 1, 2, 4, 5, tzinfo=UTC)
    assert parse_when("yesterday", now=now) == datetime(2026, 11, 28, tzinfo=UTC)
    for bad in ("", "soon", "7x", "2026-13-01", "d7"):
        with pytest.raises(ValueError):
            parse_when(bad)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _event(**kw) -> ProgressEvent:
    base = dict(
        operation="create",
        project_id="p",
        phase="reading",
        files_done=3,
        files_total=10,
        bytes_done=5 * 1024 * 1024,
        bytes_total=20 * 1024 * 1024,
        rate_bytes_per_second=2 * 1024 * 1024,
        current_path="dir/" + "x" * 200 + "/名前.bin",
    )
    base.update(kw)
    return ProgressEvent(**base)


@pytest.mark.parametrize("width", [20, 40, 60, 80, 100, 120, 200])
def test_progress_line_fits_the_terminal(width: int):
    line = render_line(_event(), width)
    assert cells(line) <= width - 1
    assert line.startswith("reading")
    if width >= 60:
        assert "25%" in line and "3/10 files" in line and "MiB" in line
    if width >= 80:
        assert line.endswith("名前.bin") and "…" in line  # path truncated from the left
    if width >= 120:
        assert "[#####" in line and "MiB/s" in line and "ETA 0:08" in line


def test_progress_line_escapes_control_characters():
    line = render_line(_event(current_path="evil\n\x1b[2Jname"), 200)
    assert "\n" not in line and "\x1b" not in line


def test_progress_bar_draws_on_a_tty_and_clears():
    stream = _Tty()
    with ProgressBar(stream) as bar:
        bar(_event())
        bar(_event(bytes_done=10 * 1024 * 1024, current_path="other"))
    text = stream.getvalue()
    assert text.startswith("\r") and "\x1b[K" in text and "50%" in text
    assert text.endswith("\r\x1b[K")  # cleared at the end
    assert "\n" not in text


def test_progress_bar_silent_when_not_a_tty():
    stream = io.StringIO()
    with ProgressBar(stream) as bar:
        bar(_event())
    assert stream.getvalue() == ""
    stream = _Tty()
    with ProgressBar(stream, enabled=False) as bar:  # --json
        bar(_event())
    assert stream.getvalue() == ""


def test_check_and_rebuild_index(tmp_path):
    root = tmp_path / "root"
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("hello\n" * 100)
    cli = [sys.executable, "-m", "cli", "--root", str(root)]
    assert subprocess.run([*cli, "create", "p", str(data)], capture_output=True).returncode == 0
    ok = subprocess.run([*cli, "check", "p", "--read-data"], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    for f in (root / "backups" / "p" / "index").iterdir():
        f.write_bytes(b"garbage")
    bad = subprocess.run([*cli, "check", "p"], capture_output=True, text=True)
    assert bad.returncode == 4 and "index file" in bad.stdout and "Traceback" not in bad.stderr
    rebuilt = subprocess.run([*cli, "rebuild-index", "p"], capture_output=True, text=True)
    assert rebuilt.returncode == 0 and "rebuilt" in rebuilt.stdout
    again = subprocess.run([*cli, "--json", "check", "p", "--read-data"], capture_output=True)
    assert again.returncode == 0


def test_the_demo_root_is_in_ram_when_there_is_room_unless_tmpdir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's throwaway repository fsyncs every object: it goes to the runtime
    directory (RAM) when there is one with room, never against an explicit TMPDIR."""
    from cli.commands.demo import ram_dir

    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    assert ram_dir() == str(run)  # tmp_path has room
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    fallback = ram_dir()  # /dev/shm where it is, else the system's temporary directory
    assert fallback in ("/dev/shm", None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert ram_dir() is None  # the user said where temporary files go
