"""Fixtures of the API tests: a real uvicorn server on 127.0.0.1 (a free port picked by the
OS) in a background thread, over a temporary repository root, with httpx clients.

Everything waits by polling with a deadline, never by fixed sleeps."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from api.app import create_app

T = TypeVar("T")
TOKEN = "t0ken-" + secrets.token_hex(16)


@contextlib.contextmanager
def running(app: Any, timeout: float = 20.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread; yield its base URL; stop it (lifespan included)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the test server did not stop"


@dataclass
class Api:
    """A running server and the directories around it."""

    base_url: str
    token: str | None
    root: Path  # the repository
    allowed: Path  # the one directory the server allows
    outside: Path  # a directory it does not allow
    app: Any = None  # the FastAPI app (its state.ctx.mgr is the server's BackupManager)

    def client(self, token: str | bool | None = True, **kwargs: Any) -> httpx.Client:
        """A client sending the server's token (True), another token (str) or none (None)."""
        headers = dict(kwargs.pop("headers", {}))
        if token is True:
            token = self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)


def _dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("api")
    dirs = base / "repo", base / "allowed", base / "outside"
    for d in dirs:
        d.mkdir()
    return dirs


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root, allowed, outside = _dirs(tmp_path_factory)
    app = create_app(root, token=TOKEN, allowed_dirs=[allowed])
    with running(app) as url:
        yield Api(url, TOKEN, root, allowed, outside, app)


@pytest.fixture(scope="module")
def make_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Api]]:
    """Start further servers with their own settings (no token, no allowed directory, or
    options of create_app)."""
    with contextlib.ExitStack() as stack:

        def make(*, token: str | None = TOKEN, allow: bool = True, **options: Any) -> Api:
            root, allowed, outside = _dirs(tmp_path_factory)
            dirs = [allowed] if allow else []
            app = create_app(root, token=token, allowed_dirs=dirs, **options)
            url = stack.enter_context(running(app))
            return Api(url, token, root, allowed, outside, app)

        yield make


@pytest.fixture
def serve() -> Callable[..., Any]:
    """`with serve(app) as base_url:` an app of the test's own making, served for real."""
    return running


@pytest.fixture
def client(api: Api) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


@pytest.fixture
def project(request: pytest.FixtureRequest) -> str:
    """A project id of its own for each test."""
    return "p" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def poll() -> Callable[..., Any]:
    return wait_until


def write_sample_tree(base: Path) -> Path:
    """A small tree with the kinds of content a backup must keep byte for byte."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "hello.txt").write_text("hello, world\n")
    (base / "empty").write_bytes(b"")
    (base / "sub" / "deeper").mkdir(parents=True)
    (base / "sub" / "random.bin").write_bytes(os.urandom(300_000))
    (base / "sub" / "deeper" / "zeros.bin").write_bytes(bytes(70_000))
    (base / "sub" / "ünïcödé name.txt").write_text("ação\n", encoding="utf-8")
    (base / "link-to-hello").symlink_to("hello.txt")
    return base


@pytest.fixture
def sample_tree() -> Callable[[Path], Path]:
    return write_sample_tree


def snapshot(base: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under `base`: kind and content (bytes of a file, target of a symlink)."""
    out: dict[str, tuple[str, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(base))
            if path.is_symlink():
                out[rel] = ("symlink", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", b"")
            else:
                out[rel] = ("file", path.read_bytes())
    return out


@pytest.fixture
def tree_of() -> Callable[[Path], dict[str, tuple[str, bytes | str]]]:
    return snapshot


def create_backup(client: httpx.Client, project: str, data_dir: Path, **extra: Any) -> dict:
    """Start a backup and wait until it has left the in-progress statuses; its metadata."""
    r = client.post(
        "/api/v1/backup/create", json={"project_id": project, "data_dir": str(data_dir), **extra}
    )
    assert r.status_code == 202, r.text
    backup_id = r.json()["id"]

    def finished() -> dict | None:
        info = client.get(f"/api/v1/backup/info/{project}/{backup_id}")
        assert info.status_code == 200, info.text
        meta = info.json()
        return meta if meta["status"] in ("completed", "failed") else None

    return wait_until(finished, what=f"backup {backup_id} to finish")


@pytest.fixture
def backup_of(client: httpx.Client) -> Callable[..., dict]:
    """`backup_of(project, data_dir, **fields)`: a finished backup's metadata."""
    return lambda project, data_dir, **extra: create_backup(client, project, data_dir, **extra)


@pytest.fixture
def backup_via() -> Callable[..., dict]:
    """`backup_via(client, project, data_dir, **fields)`: `backup_of` on another server."""
    return create_backup


def error_locs(response: httpx.Response) -> list[list[str | int]]:
    body = response.json()
    assert set(body) == {"detail"}, body
    return [item["loc"] for item in body["detail"]]


@pytest.fixture
def locs() -> Callable[[httpx.Response], list[list[str | int]]]:
    return error_locs


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict:
    """Poll a restore job until it has ended; its final state."""

    def ended() -> dict | None:
        r = client.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        return job if job["status"] != "running" else None

    return wait_until(ended, timeout, what=f"job {job_id}")


@pytest.fixture
def job_of(client: httpx.Client) -> Callable[[str], dict]:
    return lambda job_id: wait_for_job(client, job_id)
