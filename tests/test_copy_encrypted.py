"""`copy --to REPO` between repositories under different passwords (issue 12), in real
processes: the target's password from `--to-password-file F`, `--to-password-command CMD`
or `NEXUS_BACKUP_TO_PASSWORD` (else the project's own); every copy restored from the target
gives back the bytes backed up."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import fast_kdf

from core.manager import BackupManager
from core.models import CreateRequest
from core.repo.repository import Repository

REPO = Path(__file__).resolve().parents[1]
A, B = "password of the source", "password of the target"


def _tree(base: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


def nb(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_bytes(b"the quick brown fox\n" * 50)
    (d / "sub" / "random.bin").write_bytes(os.urandom(300_000))
    return d


def _project(root: Path, data: Path, password: str | None) -> None:
    """Project `p` with one backup of `data` under `root`: encrypted under `password`, or
    plain (None)."""
    mgr = BackupManager(
        root, password=(lambda _p: password) if password else None, encrypt=password is not None
    )
    asyncio.run(mgr.create(CreateRequest(project_id="p", data_dir=str(data))))


def _empty_project(root: Path, password: str | None) -> None:
    mgr = BackupManager(
        root, password=(lambda _p: password) if password else None, encrypt=password is not None
    )
    mgr._repo("p", create=True)


def _restored(tmp_path: Path, repo: Path, name: str, **env: str) -> dict[str, bytes]:
    out = tmp_path / name
    ok(nb(tmp_path / "any-root", "--repo", str(repo), "restore", "p", "latest", str(out), **env))
    return _tree(out)


@pytest.mark.slow
def test_encrypted_a_to_encrypted_b(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_kdf(monkeypatch)
    _project(tmp_path / "src", data, A)
    target = tmp_path / "target"
    _empty_project(target, B)
    pw_b = tmp_path / "b.txt"
    pw_b.write_text(B + "\n")
    # without the target's password: the project's own is tried, and the error names the
    # target and how to give its password; nothing is copied
    refused = nb(tmp_path / "src", "copy", "p", "--to", str(target), NEXUS_BACKUP_PASSWORD=A)
    assert refused.returncode == 12, refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr
    assert "target" in refused.stderr and "--to-password-file" in refused.stderr
    assert Repository(target, "p").backup_ids() == []
    assert not list(Repository(target, "p").store.children("locks/"))
    # with it, from a file and then (a second run: nothing left to send) from a command
    ok(
        nb(
            tmp_path / "src",
            "copy",
            "p",
            "--to",
            str(target),
            "--to-password-file",
            str(pw_b),
            NEXUS_BACKUP_PASSWORD=A,
        )
    )
    again = nb(
        tmp_path / "src",
        "copy",
        "p",
        "--to",
        str(target),
        "--to-password-command",
        f"cat {pw_b}",
        NEXUS_BACKUP_PASSWORD=A,
    )
    assert "already in the target" in ok(again)
    assert _restored(tmp_path, target, "out", NEXUS_BACKUP_PASSWORD=B) == _tree(data)
    # the target opens with B only
    assert (
        nb(tmp_path / "x", "--repo", str(target), "list", "p", NEXUS_BACKUP_PASSWORD=A).returncode
        == 12
    )


@pytest.mark.slow
def test_plain_to_encrypted(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_kdf(monkeypatch)
    _project(tmp_path / "src", data, None)
    # an existing encrypted target, its password from the environment
    existing = tmp_path / "existing"
    _empty_project(existing, B)
    ok(nb(tmp_path / "src", "copy", "p", "--to", str(existing), NEXUS_BACKUP_TO_PASSWORD=B))
    assert _restored(tmp_path, existing, "out1", NEXUS_BACKUP_PASSWORD=B) == _tree(data)
    # a new target, made encrypted by --encrypt under the target's password
    fresh = tmp_path / "fresh"
    ok(
        nb(
            tmp_path / "src",
            "copy",
            "p",
            "--to",
            str(fresh),
            "--encrypt",
            NEXUS_BACKUP_TO_PASSWORD=B,
        )
    )
    assert Repository(fresh, "p").encrypted()
    assert _restored(tmp_path, fresh, "out2", NEXUS_BACKUP_PASSWORD=B) == _tree(data)
    for dirpath, _dirs, files in os.walk(fresh):
        for name in files:
            raw = (Path(dirpath) / name).read_bytes()
            assert b"the quick brown fox" not in raw and b"notes.txt" not in raw


def test_encrypted_to_plain(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Into a plain target that exists (a copy never decrypts unasked: a new target of an
    encrypted project is encrypted)."""
    fast_kdf(monkeypatch)
    _project(tmp_path / "src", data, A)
    plain = tmp_path / "plain"
    _empty_project(plain, None)
    ok(nb(tmp_path / "src", "copy", "p", "--to", str(plain), NEXUS_BACKUP_PASSWORD=A))
    assert not Repository(plain, "p").encrypted()
    assert _restored(tmp_path, plain, "out") == _tree(data)


def test_an_encrypted_project_copied_into_a_plain_target_is_said_in_one_line(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copied as asked into the plain project that exists there, but never silently: one
    warning line (and `warnings` in --json), exit 0; the same after each backup of a copy-to
    that target; none into a new target, which is encrypted."""
    fast_kdf(monkeypatch)
    src = tmp_path / "src"
    _project(src, data, A)
    plain = tmp_path / "plain"
    _empty_project(plain, None)
    done = nb(src, "copy", "p", "--to", str(plain), NEXUS_BACKUP_PASSWORD=A)
    assert done.returncode == 0, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("nexus-backup: warning: ") and "stored in plain" in line, line
    again = nb(src, "--json", "copy", "p", "--to", str(plain), NEXUS_BACKUP_PASSWORD=A)
    assert again.returncode == 0
    assert "stored in plain" in json.loads(again.stdout)["warnings"][0]
    new = nb(src, "copy", "p", "--to", str(tmp_path / "new"), NEXUS_BACKUP_PASSWORD=A)
    assert new.returncode == 0 and new.stderr == "", new.stderr
    assert Repository(tmp_path / "new", "p").encrypted()
    ok(nb(src, "settings", "p", "copy-to", str(plain), NEXUS_BACKUP_PASSWORD=A))
    (data / "more.txt").write_text("more\n")
    made = nb(src, "create", "p", str(data), NEXUS_BACKUP_PASSWORD=A)
    assert made.returncode == 0, made.stderr
    assert "stored in plain" in made.stderr and "Copied to" in made.stdout


def test_a_target_password_given_makes_a_new_target_encrypted(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A careless `copy` of a plain project with --to-password-file and no --encrypt: the
    target is made under that password, never in the clear (it was made plain before)."""
    fast_kdf(monkeypatch)
    _project(tmp_path / "src", data, None)
    secret = tmp_path / "target-password"
    secret.write_text(B + "\n")
    fresh = tmp_path / "fresh"
    ok(nb(tmp_path / "src", "copy", "p", "--to", str(fresh), "--to-password-file", str(secret)))
    assert Repository(fresh, "p").encrypted()
    for dirpath, _dirs, files in os.walk(fresh):
        for name in files:
            assert b"the quick brown fox" not in (Path(dirpath) / name).read_bytes()
    assert _restored(tmp_path, fresh, "out", NEXUS_BACKUP_PASSWORD=B) == _tree(data)
    # an existing plain target stays what it is: a copy never re-keys one
    plain = tmp_path / "plain"
    _empty_project(plain, None)
    ok(nb(tmp_path / "src", "copy", "p", "--to", str(plain), "--to-password-file", str(secret)))
    assert not Repository(plain, "p").encrypted()
    assert _restored(tmp_path, plain, "out-plain") == _tree(data)
