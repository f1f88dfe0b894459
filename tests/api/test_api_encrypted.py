"""`serve` on encrypted projects (issue 12): the password given once at start opens them; a
server without it (or with a wrong one) answers 423 at once, never hangs on a prompt. Real
uvicorn servers on 127.0.0.1, and the real `nexus-backup serve` in a subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest_of import conftest_of

from api.app import create_app
from core.manager import BackupManager
from core.models import CreateRequest
from core.repo.repository import Repository

_h = conftest_of(__file__)
TOKEN, create_backup, running = _h.TOKEN, _h.create_backup, _h.running
snapshot, wait_until, write_sample_tree = _h.snapshot, _h.wait_until, _h.write_sample_tree


PASSWORD = "api secret 1"


@pytest.fixture
def encrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A root with `vault`, encrypted under PASSWORD (one backup), and the allowed dir."""
    from store_helpers import fast_kdf

    fast_kdf(monkeypatch)
    root, allowed = tmp_path / "repo", tmp_path / "allowed"
    data = write_sample_tree(allowed / "data")
    mgr = BackupManager(root, password=lambda _p: PASSWORD, encrypt=True)
    meta = asyncio.run(mgr.create(CreateRequest(project_id="vault", data_dir=str(data))))
    assert Repository(root, "vault").encrypted()
    return {"root": root, "allowed": allowed, "data": data, "backup": meta.id}


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def _restore(c: httpx.Client, backup_id: str, target: Path) -> None:
    r = c.post(
        "/api/v1/backup/restore",
        json={"project_id": "vault", "backup_id": backup_id, "restore_dir": str(target)},
    )
    assert r.status_code == 202, r.text
    job = r.json()["job_id"]

    def done() -> dict | None:
        state = c.get(f"/api/v1/jobs/{job}").json()
        return state if state["status"] in ("succeeded", "failed") else None

    assert wait_until(done, what="the restore")["status"] == "succeeded"


def test_a_server_with_the_password_backs_up_and_restores(encrypted: dict) -> None:
    app = create_app(
        encrypted["root"], token=TOKEN, allowed_dirs=[encrypted["allowed"]], password=PASSWORD
    )
    with running(app) as url, _client(url) as c:
        [summary] = c.get("/api/v1/projects").json()
        assert summary["encrypted"] and not summary["locked"] and summary["backups"] == 1
        (encrypted["data"] / "hello.txt").write_text("changed through the API\n")
        meta = create_backup(c, "vault", encrypted["data"])
        assert meta["status"] == "completed"
        target = encrypted["allowed"] / "restored"
        _restore(c, meta["id"], target)
        assert snapshot(target) == snapshot(encrypted["data"])
    # what the server wrote is sealed too: the new file's content is nowhere in the repository
    for dirpath, _dirs, files in os.walk(encrypted["root"] / "backups"):
        for name in files:
            assert b"changed through the API" not in (Path(dirpath) / name).read_bytes()


@pytest.mark.parametrize("password", [None, "not it"])
def test_without_the_password_every_request_is_423_at_once(
    encrypted: dict, password: str | None
) -> None:
    app = create_app(
        encrypted["root"], token=TOKEN, allowed_dirs=[encrypted["allowed"]], password=password
    )
    with running(app) as url, _client(url) as c:
        [summary] = c.get("/api/v1/projects").json()  # listed, as locked
        assert summary == {**summary, "project_id": "vault", "locked": True, "encrypted": True}
        target = encrypted["allowed"] / "restored"
        started = time.monotonic()
        answers = [
            c.get("/api/v1/backup/list/vault"),
            c.get(f"/api/v1/backup/info/vault/{encrypted['backup']}"),
            c.post(
                "/api/v1/backup/create",
                json={"project_id": "vault", "data_dir": str(encrypted["data"])},
            ),
            c.post(
                "/api/v1/backup/restore",
                json={"project_id": "vault", "backup_id": "latest", "restore_dir": str(target)},
            ),
        ]
        assert time.monotonic() - started < 10  # no prompt waited on
        for r in answers:
            assert r.status_code == 423, r.text
            [item] = r.json()["detail"]
            assert item["type"] == "wrong_password"
            assert ("no password" if password is None else "wrong password") in item["msg"]
        assert not target.exists()
    # nothing written, nothing locked: the repository holds what it held
    repo = Repository(encrypted["root"], "vault")
    assert repo.backup_ids() == [encrypted["backup"]]
    assert not list(repo.store.children("locks/"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["file", "command", "env"])
def test_nexus_backup_serve_reads_the_password_at_start(
    encrypted: dict, tmp_path: Path, how: str
) -> None:
    """The real command: `serve --password-file F`, `--password-command CMD` or the
    environment; standard input is not a terminal and nothing is ever asked."""
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    port = _free_port()
    env = {**os.environ, "NEXUS_BACKUP_TOKEN": TOKEN}
    env.pop("NEXUS_BACKUP_PASSWORD", None)
    how_args = {
        "file": ["--password-file", str(secret)],
        "command": ["--password-command", f"cat {secret}"],
        "env": [],
    }[how]
    if how == "env":
        env["NEXUS_BACKUP_PASSWORD"] = PASSWORD
    cmd = [sys.executable, "-m", "cli", "--root", str(encrypted["root"]), *how_args, "serve"]
    cmd += ["--port", str(port), "--allow-dir", str(encrypted["allowed"])]
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                return httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, what="the server to start")
        with _client(url) as c:
            r = c.get("/api/v1/backup/list/vault")
            assert r.status_code == 200, r.text
            assert [b["id"] for b in r.json()["items"]] == [encrypted["backup"]]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_encrypt_creates_encrypted_projects(encrypted: dict) -> None:
    app = create_app(
        encrypted["root"],
        token=TOKEN,
        allowed_dirs=[encrypted["allowed"]],
        password=PASSWORD,
        encrypt=True,
    )
    with running(app) as url, _client(url) as c:
        assert create_backup(c, "fresh", encrypted["data"])["status"] == "completed"
    assert Repository(encrypted["root"], "fresh").encrypted()
    mgr = BackupManager(encrypted["root"], password=lambda _p: PASSWORD)
    assert len(mgr.list_blocking("fresh")) == 1


def test_serve_encrypt_without_a_password_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_BACKUP_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(tmp_path), "serve", "--encrypt"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--encrypt" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_wrong_password_is_refused_again_at_once_until_the_keys_change(
    encrypted: dict,
) -> None:
    """A server with a wrong password pays one key derivation, not one per request; a key
    object added (or put back) meanwhile is tried again, without a restart."""
    app = create_app(
        encrypted["root"], token=TOKEN, allowed_dirs=[encrypted["allowed"]], password="B"
    )
    keys = encrypted["root"] / "backups" / "vault" / "keys"
    with running(app) as url, _client(url) as c:
        for _ in range(3):
            assert c.get("/api/v1/backup/list/vault").status_code == 423
        # the project's owner adds a key for the server's password: the next request opens
        BackupManager(encrypted["root"], password=lambda _p: PASSWORD).key_add("vault", "B")
        r = c.get("/api/v1/backup/list/vault")
        assert r.status_code == 200, r.text
        assert [b["id"] for b in r.json()["items"]] == [encrypted["backup"]]
    # a damaged key refuses its password; the same key put back opens again, same server
    app = create_app(
        encrypted["root"], token=TOKEN, allowed_dirs=[encrypted["allowed"]], password=PASSWORD
    )
    [first] = [
        k["id"]
        for k in BackupManager(encrypted["root"], password=lambda _p: PASSWORD).key_list("vault")
        if k["current"]
    ]
    good = (keys / first).read_bytes()
    (keys / first).write_bytes(good.replace(b'"data": "', b'"data": "AAAA', 1))
    with running(app) as url, _client(url) as c:
        assert c.get("/api/v1/backup/list/vault").status_code == 423
        (keys / first).write_bytes(good)
        assert c.get("/api/v1/backup/list/vault").status_code == 200


def test_a_wrong_password_costs_one_derivation(tmp_path: Path) -> None:
    """With the real Argon2id parameters: the first refusal pays the derivation, the next
    ten together cost less than a few of it."""
    data = write_sample_tree(tmp_path / "allowed" / "data")
    root = tmp_path / "repo"
    BackupManager(root, password=lambda _p: PASSWORD, encrypt=True)._repo("vault", create=True)
    app = create_app(root, token=TOKEN, allowed_dirs=[data.parent], password="not it")
    with running(app) as url, _client(url) as c:
        started = time.monotonic()
        assert c.get("/api/v1/backup/list/vault").status_code == 423
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(10):
            assert c.get("/api/v1/backup/list/vault").status_code == 423
        assert time.monotonic() - started < max(1.0, 3 * first)
