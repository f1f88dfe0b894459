"""What keeps the API safe to expose: the bearer token, the allowed directories (with `..` and
symlink escapes), the body bound, and the loopback-only mode without a token."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from api.auth import load_token
from api.server import serve

PROTECTED = [
    ("GET", "/api/v1/projects"),
    ("GET", "/api/v1/backup/list/p"),
    ("GET", "/api/v1/backup/info/p/b"),
    ("DELETE", "/api/v1/backup/p/b"),
    ("POST", "/api/v1/backup/create"),
    ("POST", "/api/v1/backup/restore"),
    ("GET", "/api/v1/jobs/0123456789abcdef"),
    ("GET", "/api/v1/events/p"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/path"),
]


@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong", "Basic dXNlcjpwYXNz", "Bearer", "Token abc"]
)
@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_401_without_a_valid_token(api, method, path, auth):
    headers = {"Authorization": auth} if auth else {}
    r = httpx.request(method, api.base_url + path, headers=headers, json={}, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["detail"][0]["loc"] == ["header", "Authorization"]


def test_unauthenticated_create_touches_nothing(api, project, sample_tree):
    src = sample_tree(api.allowed / project / "src")
    before = sorted(p.name for p in api.root.rglob("*"))
    with api.client(token="not-the-token") as c:
        r = c.post("/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)})
        assert r.status_code == 401
        r = c.post(
            "/api/v1/backup/create",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 401  # the body is not even parsed
    assert sorted(p.name for p in api.root.rglob("*")) == before
    assert not list(api.root.rglob(f"*{project}*"))


def test_token_is_case_sensitive_and_scheme_is_not(api):
    with httpx.Client(base_url=api.base_url) as c:
        assert (
            c.get("/api/v1/projects", headers={"Authorization": f"bearer {api.token}"}).status_code
            == 200
        )
        wrong = api.token.upper() if api.token != api.token.upper() else api.token.lower()
        assert (
            c.get("/api/v1/projects", headers={"Authorization": f"Bearer {wrong}"}).status_code
            == 401
        )


def _refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 403, r.text
    item = r.json()["detail"][0]
    assert item["loc"] == ["body", field] and item["type"] == "forbidden_path"
    assert "traceback" not in r.text.lower()


def _escapes(api, project: str) -> list[str]:
    """Spellings of a directory outside the allowed one: plain, via `..`, via a symlink."""
    secret = api.outside / project
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "secret.txt").write_text("do not read me")
    link = api.allowed / f"{project}-link"
    if not link.is_symlink():
        link.symlink_to(secret)
    return [
        str(secret),
        f"{api.allowed}/../{api.outside.name}/{project}",
        str(link),
        f"{link}/.",
        f"{link}/sub/..",
        "/",
        "/etc",
    ]


def test_create_outside_allowed_dirs_is_403_and_logged(api, client, project, tmp_path):
    for spelling in _escapes(api, project):
        r = client.post("/api/v1/backup/create", json={"project_id": project, "data_dir": spelling})
        _refused(r, "data_dir")
    assert client.get(f"/api/v1/backup/list/{project}").status_code == 404  # no project made
    log = "".join(p.read_text() for p in (api.root / "logs").glob(f"{project}_*.log"))
    assert "WARNING" in log and "refused data_dir" in log


def test_restore_outside_allowed_dirs_is_403_and_writes_nothing(
    api, client, project, sample_tree, backup_of
):
    meta = backup_of(project, sample_tree(api.allowed / project / "src"))
    escapes = _escapes(api, project)
    before = {p: sorted(os.listdir(p)) for p in [api.outside / project]}
    for spelling in [*escapes, str(api.outside / project / "new-dir")]:
        body = {"project_id": project, "backup_id": meta["id"], "restore_dir": spelling}
        _refused(client.post("/api/v1/backup/restore", json=body), "restore_dir")
        body["dry_run"] = True
        _refused(client.post("/api/v1/backup/restore", json=body), "restore_dir")
    assert {p: sorted(os.listdir(p)) for p in before} == before
    assert not (api.outside / project / "new-dir").exists()
    log = "".join(p.read_text() for p in (api.root / "logs").glob(f"{project}_*.log"))
    assert "refused restore_dir" in log


def test_relative_paths_are_422(client, project):
    r = client.post(
        "/api/v1/backup/create", json={"project_id": project, "data_dir": "relative/dir"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "data_dir"]
    body = {"project_id": project, "backup_id": "b1", "restore_dir": "../x"}
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "restore_dir"]


def test_no_allowed_dir_refuses_every_create_and_restore(make_api, project, sample_tree):
    other = make_api(allow=False)
    src = sample_tree(other.allowed / "src")
    with other.client() as c:
        r = c.post("/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)})
        _refused(r, "data_dir")
        assert "--allow-dir" in r.json()["detail"][0]["msg"]
        body = {"project_id": project, "backup_id": "x", "restore_dir": str(other.allowed)}
        _refused(c.post("/api/v1/backup/restore", json=body), "restore_dir")


def test_tokenless_server_accepts_only_loopback_host_headers(make_api):
    open_api = make_api(token=None)
    with httpx.Client(base_url=open_api.base_url) as c:
        assert c.get("/api/v1/projects").status_code == 200
        assert c.get("/api/v1/projects", headers={"Host": "localhost:1"}).status_code == 200
        r = c.get("/api/v1/projects", headers={"Host": "evil.example:80"})
        assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["header", "Host"]


def test_body_too_large_is_413(client):
    big = b'{"project_id": "p", "data_dir": "/x", "extra": {"a": "' + b"x" * (2 << 20) + b'"}}'
    r = client.post(
        "/api/v1/backup/create", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["detail"][0]["type"] == "body_too_large"

    def chunks():  # no Content-Length: the bound holds while streaming
        yield b'{"project_id": "p", "data_dir": "/x", "extra": {"a": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}}'

    r = client.post(
        "/api/v1/backup/create", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


def test_serve_refuses_non_loopback_without_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NEXUS_BACKUP_TOKEN", raising=False)
    code = serve(tmp_path, host="0.0.0.0", port=0, token=None, allowed_dirs=[])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without a token" in err[0]


def test_serve_refuses_missing_allowed_dir_and_empty_token(tmp_path, capsys):
    assert (
        serve(tmp_path, host="127.0.0.1", port=0, token="t", allowed_dirs=[tmp_path / "nope"]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "token"
    empty.write_text("\n")
    assert (
        serve(tmp_path, host="127.0.0.1", port=0, token=None, allowed_dirs=[], token_file=empty)
        == 2
    )
    assert "empty" in capsys.readouterr().err


def test_load_token_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXUS_BACKUP_TOKEN", "from-env")
    f = tmp_path / "tok"
    f.write_text("from-file\n")
    assert load_token("from-option", f) == "from-option"
    assert load_token(None, f) == "from-file"
    assert load_token(None, None) == "from-env"
    monkeypatch.delenv("NEXUS_BACKUP_TOKEN")
    assert load_token(None, None) is None
    assert Path(f).read_text() == "from-file\n"


def test_serve_runs_and_warns_loudly_without_a_token(tmp_path):
    """`serve` for real, in a subprocess: the warning, a working port, a clean stop."""
    import re
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k != "NEXUS_BACKUP_TOKEN"}
    code = (
        "import sys; from pathlib import Path; from api.server import serve; "
        f"sys.exit(serve(Path({str(tmp_path / 'repo')!r}), host='127.0.0.1', port=0, "
        f"token=None, allowed_dirs=[Path({str(tmp_path)!r})]))"
    )
    cmd = [sys.executable, "-c", code]
    cwd = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    ) as proc:
        lines: list[str] = []
        try:
            deadline = time.monotonic() + 30
            port = None
            while port is None:
                assert time.monotonic() < deadline, "".join(lines)
                line = proc.stderr.readline()
                assert line or proc.poll() is None, "".join(lines)
                lines.append(line)
                if m := re.search(r"running on http://127\.0\.0\.1:(\d+)", line):
                    port = int(m.group(1))
            assert "RUNNING WITHOUT A TOKEN" in "".join(lines)
            r = httpx.get(f"http://127.0.0.1:{port}/api/v1/projects", timeout=10)
            assert r.status_code == 200 and r.json() == []
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=30)
            finally:
                proc.kill()
    assert rc == 0


def test_symlink_inside_the_restore_target_is_not_followed(
    api, client, project, sample_tree, backup_of, job_of
):
    """A target that already holds `sub -> outside`: the restore never writes through it."""
    meta = backup_of(project, sample_tree(api.allowed / project / "src"))
    target = api.allowed / project / "target"
    target.mkdir()
    victim = api.outside / f"{project}-victim"
    victim.mkdir()
    (target / "sub").symlink_to(victim)
    for overwrite in ("if-changed", "always"):
        body = {
            "project_id": project,
            "backup_id": meta["id"],
            "restore_dir": str(target),
            "overwrite": overwrite,
            "checkpoint": False,
        }
        r = client.post("/api/v1/backup/restore", json=body)
        assert r.status_code == 202, r.text
        job = job_of(r.json()["job_id"])
        assert job["status"] == "succeeded", job
        assert os.listdir(victim) == []


def test_serve_refuses_a_short_token_from_any_source(tmp_path, capsys, monkeypatch):
    """The API's own entry point applies the rule too (core.config.short_token), so that a
    caller other than the CLI cannot start it with a guessable token."""
    monkeypatch.setenv("NEXUS_BACKUP_TOKEN", "0123456789abcde")  # 15 characters
    assert serve(tmp_path, host="127.0.0.1", port=0, token=None, allowed_dirs=[]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shorter than 16" in err[0]
    assert serve(tmp_path, host="127.0.0.1", port=0, token="short", allowed_dirs=[]) == 2
    assert "shorter than 16" in capsys.readouterr().err
