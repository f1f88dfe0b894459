"""Issue #9 against a real server: cross-site requests refused, ids matched whole, nesting and
per-request work bounded, no path of the repository ever in an answer, errors of a damaged or
read-only repository mapped to their documented statuses."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from core.models import MAX_EXTRA_DEPTH, MAX_RESTORE_PATHS

TOKEN = "safety-" + os.urandom(8).hex()
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CROSS_ORIGINS = ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1"]


def _nested(levels: int, *, as_list: bool = False) -> object:
    """`levels` levels of objects (or arrays), the outermost the first."""
    value: object = "leaf"
    for _ in range(levels):
        value = [value] if as_list else {"k": value}
    return value


def _own(api, name: str = "127.0.0.1") -> str:
    return "http://" + api.base_url.split("://", 1)[1].replace("127.0.0.1", name)


@pytest.fixture(scope="module")
def open_api(make_api):
    """A server without a token: loopback only, the mode a CSRF attack would aim at."""
    return make_api(token=None)


# --- 1. Origin and Sec-Fetch-Site, Content-Type ---------------------------------------------


@pytest.mark.parametrize("origin", CROSS_ORIGINS)
def test_cross_origin_requests_are_refused_and_touch_nothing(open_api, project, origin):
    src = open_api.allowed / project
    src.mkdir(exist_ok=True)
    (src / "f").write_text("x")
    with httpx.Client(base_url=open_api.base_url, headers={"Origin": origin}) as c:
        body = {"project_id": project, "data_dir": str(src)}
        r = c.post("/api/v1/backup/create", json=body)
        assert r.status_code == 403, r.text
        assert r.json()["detail"][0]["loc"] == ["header", "Origin"]
        assert r.json()["detail"][0]["type"] == "forbidden_origin"
        assert c.get("/api/v1/projects").status_code == 403
        assert c.delete(f"/api/v1/backup/{project}/b1").status_code == 403
    assert not (open_api.root / "backups" / project).exists()


def test_own_origin_and_no_origin_are_served(open_api, project):
    for origin in (_own(open_api), _own(open_api, "localhost"), _own(open_api).upper(), None):
        headers = {"Origin": origin} if origin else {}
        with httpx.Client(base_url=open_api.base_url, headers=headers) as c:
            assert c.get("/api/v1/projects").status_code == 200, origin
            r = c.get(f"/api/v1/backup/list/{project}")
            assert r.status_code == 404, (origin, r.text)  # reached the handler


@pytest.mark.parametrize(
    ("site", "method", "allowed"),
    [
        ("cross-site", "GET", False),
        ("cross-site", "POST", False),
        ("same-site", "GET", True),
        ("same-site", "POST", False),
        ("same-site", "DELETE", False),
        ("same-origin", "POST", True),
        ("none", "GET", True),
    ],
)
def test_sec_fetch_site(open_api, site, method, allowed):
    with httpx.Client(base_url=open_api.base_url, headers={"Sec-Fetch-Site": site}) as c:
        if method == "GET":
            r = c.get("/api/v1/projects")
        elif method == "DELETE":
            r = c.delete("/api/v1/backup/p1/b1")
        else:
            r = c.post("/api/v1/backup/create", json={"project_id": "p1", "data_dir": "rel"})
    if allowed:
        assert r.status_code != 403, r.text
    else:
        assert r.status_code == 403, r.text
        assert r.json()["detail"][0]["loc"] == ["header", "Sec-Fetch-Site"]


def test_origin_is_checked_with_a_token_too(api, client):
    r = client.get("/api/v1/projects", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["detail"][0]["type"] == "forbidden_origin"
    assert client.get("/api/v1/projects", headers={"Origin": _own(api)}).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json; charset=latin-1",
        "application/json; boundary=x",
        "application/merge-patch+json",
    ],
)
def test_a_body_that_is_not_declared_json_is_415_and_touches_nothing(
    open_api, project, content_type
):
    src = open_api.allowed / project
    src.mkdir(exist_ok=True)
    raw = json.dumps({"project_id": project, "data_dir": str(src)}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    with httpx.Client(base_url=open_api.base_url) as c:
        r = c.post("/api/v1/backup/create", content=raw, headers=headers)
        assert r.status_code == 415, r.text
        assert r.json()["detail"][0]["loc"] == ["header", "Content-Type"]
        body = {"project_id": project, "backup_id": "b1", "restore_dir": str(src)}
        r = c.post("/api/v1/backup/restore", content=json.dumps(body).encode(), headers=headers)
        assert r.status_code == 415, r.text
    assert not (open_api.root / "backups" / project).exists()


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=UTF-8", 'application/json;charset="utf-8"'],
)
def test_json_with_or_without_a_utf8_charset_is_accepted(client, content_type):
    raw = json.dumps({"project_id": "p1", "data_dir": "relative"}).encode()
    r = client.post("/api/v1/backup/create", content=raw, headers={"Content-Type": content_type})
    assert r.status_code == 422, r.text  # reached validation
    assert r.json()["detail"][0]["loc"] == ["body", "data_dir"]


# --- 2. ids matched whole -------------------------------------------------------------------

NEWLINE_IDS = ["x%0A", "x%0D%0A", "%0Ax", "x%250A", "x%00"]


@pytest.mark.parametrize("bad", NEWLINE_IDS)
def test_ids_with_a_newline_in_paths_are_422(client, bad):
    for url, field in [
        (f"/api/v1/backup/list/{bad}", "project_id"),
        (f"/api/v1/backup/info/{bad}/b1", "project_id"),
        (f"/api/v1/backup/info/p1/{bad}", "backup_id"),
        (f"/api/v1/events/{bad}", "project_id"),
    ]:
        r = client.get(url)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["detail"][0]["loc"] == ["path", field]
    r = client.delete(f"/api/v1/backup/p1/{bad}")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "backup_id"]
    r = client.delete(f"/api/v1/backup/{bad}/b1")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "project_id"]
    r = client.get(f"/api/v1/jobs/0123456789abcdef{bad}")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "job_id"], r.text


@pytest.mark.parametrize("bad", ["x\n", "x%0A", "x\r\n", "\nx", "x\x00"])
def test_ids_with_a_newline_in_bodies_are_422(client, api, bad):
    create = {"project_id": bad, "data_dir": str(api.allowed)}
    restore = {"project_id": "ok", "backup_id": bad, "restore_dir": str(api.allowed)}
    parent = {"project_id": "ok", "data_dir": str(api.allowed), "parent_backup_id": bad}
    for url, body, field in [
        ("/api/v1/backup/create", create, "project_id"),
        ("/api/v1/backup/restore", restore, "backup_id"),
        ("/api/v1/backup/create", parent, "parent_backup_id"),
    ]:
        r = client.post(url, json=body)
        assert r.status_code == 422, r.text
        assert ["body", field] in [i["loc"] for i in r.json()["detail"]]


def test_documented_id_patterns_are_anchored(client):
    doc = client.get("/openapi.json").json()
    patterns = [
        p["schema"]["pattern"]
        for op in doc["paths"].values()
        for method in op.values()
        for p in method.get("parameters", [])
        if "pattern" in p.get("schema", {})
    ]
    assert patterns and all(p.startswith("^") and p.endswith("$") for p in patterns)


# --- 3. nesting of extra --------------------------------------------------------------------


def test_extra_at_the_depth_bound_is_kept(api, client, project, sample_tree, backup_of):
    extra = {
        "deep": _nested(MAX_EXTRA_DEPTH - 1),
        "list": _nested(MAX_EXTRA_DEPTH - 1, as_list=True),
    }
    meta = backup_of(project, sample_tree(api.allowed / project / "src"), extra=extra)
    assert meta["status"] == "completed"
    r = client.get(f"/api/v1/backup/info/{project}/{meta['id']}")
    assert r.status_code == 200 and r.json()["extra"] == extra
    assert client.get(f"/api/v1/backup/list/{project}").json()["items"][0]["extra"] == extra


@pytest.mark.parametrize("as_list", [False, True])
def test_extra_one_level_too_deep_is_422_with_a_clear_message(client, api, project, as_list):
    extra = {"k": _nested(MAX_EXTRA_DEPTH, as_list=as_list)}  # extra itself is the first level
    body = {"project_id": project, "data_dir": str(api.allowed), "extra": extra}
    r = client.post("/api/v1/backup/create", json=body)
    assert r.status_code == 422, r.text
    item = r.json()["detail"][0]
    assert item["loc"] == ["body", "extra"]
    assert f"deeper than {MAX_EXTRA_DEPTH} levels" in item["msg"]
    assert not (api.root / "backups" / project).exists()


@pytest.mark.parametrize("levels", [210, 400, 10_000, 100_000])
@pytest.mark.parametrize("where", ["extra", "tags", "paths"])
def test_absurd_nesting_is_422_never_500(client, api, project, levels, where):
    deep = _nested(levels)
    if where == "paths":
        url = "/api/v1/backup/restore"
        body = {"project_id": project, "backup_id": "b1", "restore_dir": str(api.allowed)}
        body["paths"] = [deep]
    else:
        url = "/api/v1/backup/create"
        body = {"project_id": project, "data_dir": str(api.allowed), where: {"k": deep}}
    raw = json.dumps(body).encode() if levels < 900 else _raw_nested(body, where, levels)
    r = client.post(url, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"][0]["loc"][0] == "body"
    assert not (api.root / "backups" / project).exists()
    assert client.get("/api/v1/health").status_code == 200


def _raw_nested(body: dict, where: str, levels: int) -> bytes:
    """The JSON text of `body` with `levels` levels in `where`, built without json.dumps
    (whose recursion is bounded too)."""
    deep = '{"k": ' * levels + '"leaf"' + "}" * levels
    placeholder = "__DEEP__"
    if where == "paths":
        body = {**body, "paths": [placeholder]}
    else:
        body = {**body, where: {"k": placeholder}}
    return json.dumps(body).replace(f'"{placeholder}"', deep).encode()


def test_a_deep_string_is_not_nesting(client, api, project):
    """Brackets inside strings (escaped quotes included) do not count as nesting."""
    text = '\\"[{' * 3000
    body = {
        "project_id": project,
        "data_dir": "relative",
        "tags": {"t": '"[[{{'},
        "name": text[:200],
    }
    r = client.post("/api/v1/backup/create", json=body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "data_dir"], r.text


# --- 4. work per request --------------------------------------------------------------------


def test_more_than_max_restore_paths_is_422(client, api, project):
    body = {
        "project_id": project,
        "backup_id": "b1",
        "restore_dir": str(api.allowed),
        "paths": [f"f{i}" for i in range(MAX_RESTORE_PATHS + 1)],
    }
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "paths"]


@pytest.mark.slow
def test_dry_run_of_max_restore_paths_globs_answers_within_seconds(api, client, project, backup_of):
    src = api.allowed / project / "src"
    for d in range(10):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(60):
            (src / f"d{d}" / f"f{f}.txt").write_text(f"{d}/{f}")
    meta = backup_of(project, src)
    # every one matches: half exact paths, half globs (a path matching nothing is an error)
    globs = [
        f"d{i % 10}/f{i % 60}.txt" if i % 2 else f"d*/f{i % 60}.t?t"
        for i in range(MAX_RESTORE_PATHS)
    ]
    names = [f"d{d}/f{f}.txt" for d in range(10) for f in range(60)]
    expected = {n for n in names for g in globs if fnmatch.fnmatchcase(n, g)}
    body = {
        "project_id": project,
        "backup_id": meta["id"],
        "restore_dir": str(api.allowed / project / "target"),
        "paths": globs,
        "dry_run": True,
    }
    started = time.monotonic()
    r = client.post("/api/v1/backup/restore", json=body)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    result = r.json()
    assert not result["changes_truncated"]
    created = {c["path"] for c in result["changes"] if c["kind"] == "file"}
    assert created == expected and all(c["action"] == "create" for c in result["changes"])
    assert elapsed < 5, f"the dry run took {elapsed:.1f} s"
    assert not (api.allowed / project / "target").exists()


# --- 6. the repository's root is never in an answer ----------------------------------------


def _spellings(root) -> set[str]:
    real = os.path.realpath(root)
    return {str(root), real, json.dumps(str(root))[1:-1], json.dumps(real)[1:-1]}


def test_no_answer_of_a_whole_cycle_names_the_repository(make_api, sample_tree, poll):
    srv = make_api()
    seen: list[tuple[str, str]] = []

    def record(response: httpx.Response) -> None:
        response.read()
        headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
        seen.append(
            (f"{response.request.method} {response.request.url.path}", headers + response.text)
        )

    project = "cycle"
    with srv.client(event_hooks={"response": [record]}) as c:

        def finished(backup_id: str) -> dict:
            def done() -> dict | None:
                meta = c.get(f"/api/v1/backup/info/{project}/{backup_id}").json()
                return meta if meta["status"] in ("completed", "failed") else None

            return poll(done)

        def job(job_id: str) -> dict:
            return poll(
                lambda: (
                    (j := c.get(f"/api/v1/jobs/{job_id}").json())["status"]
                    not in ("queued", "running")
                    and j
                )
            )

        src = sample_tree(srv.allowed / "src")
        body = {"project_id": project, "data_dir": str(src)}
        first = finished(c.post("/api/v1/backup/create", json=body).json()["id"])
        second = finished(c.post("/api/v1/backup/create", json=body).json()["id"])
        assert first["status"] == second["status"] == "completed"
        c.get(f"/api/v1/backup/list/{project}")
        c.get("/api/v1/projects")
        c.get(f"/api/v1/backup/info/{project}/latest")
        # a restore over a changed target: a checkpoint is taken, the undo is offered
        target = srv.allowed / "target"
        restore = {"project_id": project, "backup_id": first["id"], "restore_dir": str(target)}
        assert (
            job(c.post("/api/v1/backup/restore", json=restore).json()["job_id"])["status"]
            == "succeeded"
        )
        (target / "hello.txt").write_text("changed\n")
        dry = c.post("/api/v1/backup/restore", json={**restore, "dry_run": True})
        assert dry.status_code == 200
        done = job(
            c.post("/api/v1/backup/restore", json={**restore, "overwrite": "always"}).json()[
                "job_id"
            ]
        )
        assert done["status"] == "succeeded", done
        result = done["result"]
        undo = result["undo"]
        assert result["checkpoint_id"] and {k: undo[k] for k in undo if k != "request"} == {
            "project_id": project,
            "checkpoint_id": result["checkpoint_id"],
            "target": str(target),
        }
        # the undo's exact request, posted as it is, brings back the changed file
        assert (
            job(c.post("/api/v1/backup/restore", json=undo["request"]).json()["job_id"])["status"]
            == "succeeded"
        )
        assert (target / "hello.txt").read_text() == "changed\n"
        assert (
            "--root" not in result["undo_hint"] and result["checkpoint_id"] in result["undo_hint"]
        )
        # errors: an unreadable metadata.json, a pack that is a directory, a missing backup
        backup_dir = srv.root / "backups" / project / f"backup_{second['id']}"
        (backup_dir / "metadata.json").unlink()
        (backup_dir / "metadata.json").mkdir()
        for r in (
            c.get(f"/api/v1/backup/info/{project}/{second['id']}"),
            c.post("/api/v1/backup/restore", json={**restore, "backup_id": second["id"]}),
            c.get(f"/api/v1/backup/list/{project}"),
        ):
            assert r.status_code < 500, r.text
        packs = sorted(
            p for p in (srv.root / "backups" / project / "packs").rglob("*") if p.is_file()
        )
        for pack in packs:
            pack.unlink()
            pack.mkdir()
        failed = c.post(
            "/api/v1/backup/restore", json={**restore, "restore_dir": str(srv.allowed / "t2")}
        )
        if failed.status_code == 202:
            assert job(failed.json()["job_id"])["status"] == "failed"
        else:
            assert 400 <= failed.status_code < 500
        c.get(f"/api/v1/backup/info/{project}/nosuch")
        c.delete(f"/api/v1/backup/{project}/{first['id']}")
        c.delete(f"/api/v1/backup/{project}/{second['id']}")
        c.get("/openapi.json")
    assert len(seen) > 15
    for what, text in seen:
        for spelling in _spellings(srv.root):
            assert spelling not in text, f"{what} names the repository: {text[:500]}"


def test_redactor_hides_the_root_and_only_the_root(tmp_path):
    from api.redact import Redactor

    root = tmp_path / "répo"
    root.mkdir()
    link = tmp_path / "via-link"
    link.symlink_to(root)
    redact = Redactor([link]).text
    real = str(root)
    assert (
        redact(f"{real}/backups/p/x: is a directory") == "<repository>/backups/p/x: is a directory"
    )
    assert redact(f"open {link}: denied") == "open <repository>: denied"
    assert redact(json.dumps({"msg": f"{real}/packs"})) == json.dumps({"msg": "<repository>/packs"})
    assert redact(json.dumps({"msg": real}, ensure_ascii=False)) == '{"msg": "<repository>"}'
    assert redact(f"{real}2/data and {real}.old") == f"{real}2/data and {real}.old"
    assert Redactor(["/"]).text("/etc/passwd") == "/etc/passwd"


# --- 8. a read-only or damaged repository: documented statuses, never 500 --------------------


@contextlib.contextmanager
def _read_only_able(path: Path) -> Iterator[Callable[[], None]]:
    """A directory that can be made read-only for real (also for root: a tmpfs remounted
    read-only); yields the function that does it."""
    path.mkdir()
    if os.geteuid() != 0:

        def chmod_ro() -> None:
            for p in [path, *path.rglob("*")]:
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode & ~0o222)

        try:
            yield chmod_ro
        finally:
            for p in [path, *path.rglob("*")]:
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | 0o200)
        return
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mount.stderr.strip()}")
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _documented(doc: dict, method: str, template: str, status: int) -> bool:
    return str(status) in doc["paths"][template][method.lower()]["responses"]


def _one_error(r: httpx.Response) -> None:
    body = r.json()
    assert set(body) == {"detail"} and len(body["detail"]) == 1, body
    assert "\n" not in body["detail"][0]["msg"] and "Traceback" not in r.text


def _first_backup(serve, root: Path, allowed: Path, src: Path, backup_via) -> dict:
    """A completed backup of `src` as project "p", made by a server of its own."""
    app = create_app(root, token=TOKEN, allowed_dirs=[allowed])
    with serve(app) as url, httpx.Client(base_url=url, headers=AUTH) as c:
        return backup_via(c, "p", src)


@pytest.fixture
def read_only_repo(tmp_path, serve, sample_tree, backup_via):
    """A repository holding one completed backup of project "p", then made read-only; a
    fresh server over it (its manager opens the project for the first time)."""
    allowed = tmp_path / "allowed"
    src = sample_tree(allowed / "src")
    with _read_only_able(tmp_path / "ro") as make_read_only:
        root = tmp_path / "ro" / "repo"
        meta = _first_backup(serve, root, allowed, src, backup_via)
        make_read_only()
        app = create_app(root, token=TOKEN, allowed_dirs=[allowed])
        with serve(app) as url, httpx.Client(base_url=url, headers=AUTH) as c:
            yield c, meta, allowed, src


def _requests(meta: dict, allowed: Path, src: Path) -> list[tuple[str, str, str, dict | None]]:
    restore = {"project_id": "p", "backup_id": meta["id"], "restore_dir": str(allowed / "t")}
    return [
        ("GET", "/api/v1/projects", "/api/v1/projects", None),
        ("GET", "/api/v1/backup/list/p", "/api/v1/backup/list/{project_id}", None),
        *[
            (
                "GET",
                f"/api/v1/backup/info/p/{b}",
                "/api/v1/backup/info/{project_id}/{backup_id}",
                None,
            )
            for b in (meta["id"], "latest")
        ],
        ("POST", "/api/v1/backup/restore", "/api/v1/backup/restore", {**restore, "dry_run": True}),
        ("POST", "/api/v1/backup/restore", "/api/v1/backup/restore", restore),
        (
            "POST",
            "/api/v1/backup/create",
            "/api/v1/backup/create",
            {"project_id": "p", "data_dir": str(src)},
        ),
        (
            "DELETE",
            f"/api/v1/backup/p/{meta['id']}",
            "/api/v1/backup/{project_id}/{backup_id}",
            None,
        ),
    ]


def test_read_only_repository_answers_are_documented_never_500(read_only_repo):
    c, meta, allowed, src = read_only_repo
    doc = c.get("/openapi.json").json()
    for method, url, template, body in _requests(meta, allowed, src):
        r = c.request(method, url, json=body)
        assert r.status_code < 500 or r.status_code == 507, (url, r.text)
        assert _documented(doc, method, template, r.status_code), (url, r.status_code, r.text)
        if r.status_code >= 400:
            _one_error(r)
        if r.status_code == 202 and "job_id" in r.json():
            job = c.get(f"/api/v1/jobs/{r.json()['job_id']}").json()
            assert job["status"] != "failed" or job["error"]["status_code"] < 500, job


def test_read_only_repository_serves_reads(read_only_repo):
    c, meta, _allowed, _src = read_only_repo
    assert [p["project_id"] for p in c.get("/api/v1/projects").json()] == ["p"]
    r = c.get("/api/v1/backup/list/p")
    assert r.status_code == 200 and [m["id"] for m in r.json()["items"]] == [meta["id"]]
    r = c.get(f"/api/v1/backup/info/p/{meta['id']}")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert c.get("/api/v1/backup/info/p/latest").json()["id"] == meta["id"]


BAD_CONFIGS = ["[]", '"text"', "{}", '{"chunker": 5}', '{"version": "two"}', "{bad json"]


@pytest.fixture
def bad_config(tmp_path, serve, sample_tree, backup_via):
    """`bad_config(text)`: a fresh server over a repository whose project "p" (one completed
    backup) has `text` as its config.json."""
    allowed = tmp_path / "allowed"
    src = sample_tree(allowed / "src")
    root = tmp_path / "repo"
    with contextlib.ExitStack() as stack:
        meta = _first_backup(serve, root, allowed, src, backup_via)

        def make(text: str) -> tuple[httpx.Client, list]:
            (root / "backups" / "p" / "config.json").write_text(text)
            url = stack.enter_context(serve(create_app(root, token=TOKEN, allowed_dirs=[allowed])))
            c = stack.enter_context(httpx.Client(base_url=url, headers=AUTH))
            return c, _requests(meta, allowed, src)

        yield make


@pytest.mark.parametrize("text", BAD_CONFIGS)
def test_damaged_config_answers_are_documented_never_500(bad_config, text):
    c, requests = bad_config(text)
    doc = c.get("/openapi.json").json()
    for method, url, template, body in requests:
        r = c.request(method, url, json=body)
        assert r.status_code < 500, (url, r.text)
        assert _documented(doc, method, template, r.status_code), (url, r.status_code, r.text)
        if r.status_code >= 400:
            _one_error(r)


@pytest.mark.parametrize("text", BAD_CONFIGS)
def test_damaged_config_is_409_damaged(bad_config, text):
    c, requests = bad_config(text)
    for method, url, _template, body in requests:
        if url.endswith("/create") or (url.endswith("/restore") and not body.get("dry_run")):
            r = c.request(method, url, json=body)
            assert r.status_code == 409, (url, r.text)
            _one_error(r)
            item = r.json()["detail"][0]
            assert item["type"] == "damaged" and "config.json" in item["msg"]


def test_event_stream_does_not_name_the_repository(api, project):
    """A log line of the core naming a file of the repository reaches the stream redacted."""
    mgr = api.app.state.ctx.mgr
    line = f"backup failed: {os.path.realpath(api.root)}/backups/{project}/packs/ab: denied"
    with api.client() as sse, sse.stream("GET", f"/api/v1/events/{project}") as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("event: ready")
        mgr.logger.error(project, "create", line)
        for text in lines:
            if text.startswith("data: ") and "backup failed" in text:
                break
    for spelling in _spellings(api.root):
        assert spelling not in text
    message = json.loads(text[len("data: ") :])["message"]
    assert message == f"backup failed: <repository>/backups/{project}/packs/ab: denied"
