"""Every read-only command of the CLI, run as a user runs it, over a repository a crash and
an interrupted delete left in odd states (design I3): not one file of the repository is
added, removed or changed, but `verify.json` (verify's own record) and the logs.

The audit's "a read-only `list` deleted a manifest", tried on every face a script reaches:
the states are real (a backup killed with SIGKILL mid-run, a delete cut after its
tombstone, a backup in retention's grace period, a metadata.json flipped) and so are the
processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest_of import conftest_of
from rel_harness import REPO_DIR, cli_process, driver_env

from api.app import create_app

P = "web"


def _repository(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and directory of the repository with its mode and bytes."""
    out: dict[str, tuple[int, bytes]] = {}
    top = root / "backups"
    for dirpath, dirs, names in os.walk(top):
        for n in dirs + names:
            p = Path(dirpath) / n
            rel = str(p.relative_to(top))
            if n == "verify.json":
                continue
            st = p.lstat()
            out[rel] = (st.st_mode, p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
    return out


def _ok(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = cli_process(root, *args)
    assert done.returncode in (0, 1, 3, 4), (args, done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, (args, done.stderr)
    return done


def _killed_mid_backup(root: Path, data: Path) -> None:
    """A backup of a large file, killed with SIGKILL once its metadata says running."""
    big = data / "big.bin"
    with big.open("wb") as f:
        for i in range(48):
            f.write(os.urandom(1 << 20) if i % 4 == 0 else bytes([i]) * (1 << 20))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "--root", str(root), "create", P, str(data)],
        env=driver_env(),
        cwd=str(REPO_DIR),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    project = root / "backups" / P
    try:
        while time.monotonic() < deadline:
            running = [
                m
                for m in project.glob("backup_*/metadata.json")
                if json.loads(m.read_text() or "{}").get("status") == "running"
            ]
            if running and list(project.glob("locks/*")):
                break
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    big.unlink()


def _odd_repository(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A root whose project holds four backups, then: the oldest removed by retention (in
    its grace period), a delete of the second cut right after its tombstone, a flipped byte
    in the third's metadata.json, and a fifth killed with SIGKILL mid-run."""
    root = tmp_path / "root"
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "sub" / "b.txt").write_text("b" * 5000)
    ids = []
    for i in range(4):
        (data / "a.txt").write_text(f"a{i}")
        made = json.loads(cli_process(root, "--json", "create", P, str(data)).stdout)
        ids.append(made["id"])
    project = root / "backups" / P
    assert cli_process(root, "forget", P, "--keep-last", "3").returncode == 0
    (project / "deleting").mkdir(exist_ok=True)
    (project / "deleting" / ids[1]).write_bytes(b"")
    (project / f"backup_{ids[1]}" / "metadata.json").unlink()
    meta = project / f"backup_{ids[2]}" / "metadata.json"
    raw = bytearray(meta.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    meta.write_bytes(bytes(raw))
    _killed_mid_backup(root, data)
    return root, data, ids


def test_every_read_only_command_leaves_every_byte_of_the_repository(tmp_path: Path) -> None:
    root, data, ids = _odd_repository(tmp_path)
    project = root / "backups" / P
    last = ids[3]
    before = _repository(root)
    commands = [
        ("list", P),
        ("--json", "list", P),
        ("info", P, last),
        ("projects",),
        ("--json", "projects"),
        ("stats",),
        ("stats", P),
        ("diff", P, ids[0], last),
        ("diff", P, last, "--live"),
        ("find", P, "b.txt"),
        ("find", "--all-projects", "*.txt"),
        ("ls", P, last, "-R"),
        ("cat", P, last, "a.txt"),
        ("dump", P, last),
        ("check", P),
        ("check", P, "--read-data"),
        ("verify", P, last),
        ("verify", P, "--all"),
        ("undelete", P),
        ("policy", "show", P),
        ("settings", P),
        ("schedule", "status"),
    ]
    for args in commands:
        _ok(root, *args)
        assert _repository(root) == before, (
            f"`nexus-backup {' '.join(args)}` changed the repository"
        )
    # and a writer, the next one, finishes what the crash and the cut delete left
    assert cli_process(root, "create", P, str(data)).returncode in (0, 3)
    assert not (project / f"backup_{ids[1]}").exists()


def test_every_get_of_the_api_leaves_every_byte_of_the_repository(tmp_path: Path) -> None:
    root, data, ids = _odd_repository(tmp_path)
    last = ids[3]
    api = conftest_of(str(Path(__file__).parents[1] / "api" / "conftest.py"))
    token = "t-" + "0" * 30
    before = _repository(root)
    gets = [
        "/api/v1/health",
        "/api/v1/projects",
        f"/api/v1/backup/list/{P}",
        f"/api/v1/backup/info/{P}/{last}",
        f"/api/v1/backup/info/{P}/{ids[2]}",
        f"/api/v1/projects/{P}/policy",
        f"/api/v1/projects/{P}/stats",
        f"/api/v1/backup/removed/{P}",
        f"/api/v1/backup/diff/{P}/{ids[0]}/{last}",
        f"/api/v1/backup/find/{P}?q=b.txt",
        f"/api/v1/backup/ls/{P}/{last}",
        f"/api/v1/backup/file/{P}/{last}?path=a.txt",
        "/metrics",
    ]
    app = create_app(root, token=token, allowed_dirs=[data.parent])
    with (
        api.running(app) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client,
    ):
        for path in gets:
            got = client.get(path)
            assert got.status_code < 500, (path, got.status_code, got.text)
            assert _repository(root) == before, f"GET {path} changed the repository"
