"""Independent audit of issue #9 against a real server: Origin and Content-Type variants the
API suite does not try, odd spellings of paths, and a deterministic "swap after the check":
the operation is queued behind a busy slot, and the parent of the directory it names is
replaced by a symlink leading outside while it waits. Nothing may be read from, or written
to, outside the allowed directory."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

TOKEN = "audit-" + os.urandom(8).hex()


def _port(api) -> str:
    return api.base_url.rsplit(":", 1)[1]


@pytest.fixture(scope="module")
def open_api(make_api):
    """A tokenless loopback server (the one a cross-site page would aim at)."""
    return make_api(token=None)


@pytest.fixture(scope="module")
def one_slot(make_api):
    """A server running one long operation at a time (the others queue)."""
    return make_api(token=None, max_running=1)


ORIGIN_VARIANTS = [
    "http://127.0.0.1.:{port}",  # trailing dot: another origin for a browser
    "http://127.0.0.1:{port}.evil.example",
    "http://127.0.0.1:{other}",
    "http://[::ffff:127.0.0.1]:{port}",
    "http://[0:0:0:0:0:0:0:1]:{port}",
    "http://user@127.0.0.1:{port}",
    "HTTP://EVIL.EXAMPLE",
    "http://localhost.evil.example:{port}",
    "file://",
    "Null",
    "",
]


@pytest.mark.parametrize("origin", ORIGIN_VARIANTS)
def test_spoofed_origins_never_change_anything(open_api, origin):
    port = _port(open_api)
    other = str(int(port) + 1 if int(port) < 65535 else 1)
    header = origin.format(port=port, other=other)
    project = "o" + os.urandom(4).hex()
    src = open_api.allowed / project
    src.mkdir()
    (src / "f").write_text("x")
    with httpx.Client(base_url=open_api.base_url, headers={"Origin": header}) as c:
        r = c.post("/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)})
    assert r.status_code in (403, 400), (header, r.status_code, r.text)
    assert not (open_api.root / "backups" / project).exists(), header


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json-seq",
        "application/JSON; charset=latin-1",
        "application/json, text/plain",
        "application/json;charset=utf-8;charset=latin-1",
        "application/x-json",
        "text/json",
    ],
)
def test_content_type_tricks_are_415(open_api, content_type):
    project = "c" + os.urandom(4).hex()
    src = open_api.allowed / project
    src.mkdir()
    raw = json.dumps({"project_id": project, "data_dir": str(src)}).encode()
    with httpx.Client(base_url=open_api.base_url) as c:
        r = c.post("/api/v1/backup/create", content=raw, headers={"Content-Type": content_type})
    assert r.status_code == 415, (content_type, r.text)
    assert not (open_api.root / "backups" / project).exists()


def test_odd_spellings_of_a_path_resolve_inside_or_are_refused(open_api):
    """`//`, a trailing `/.`, `/..` back inside, and a `..` escaping: never a 500, and an
    escaping spelling is 403."""
    allowed, outside = open_api.allowed, open_api.outside
    project = "s" + os.urandom(4).hex()
    src = allowed / project
    src.mkdir()
    (src / "f").write_text("x")
    (outside / "secret").write_text("secret")
    inside = [f"/{src}", f"{src}//", f"{src}/.", f"{src}/../{project}", f"{allowed}//{project}"]
    escaping = [f"{src}/../../{outside.name}", f"{allowed}/./../{outside.name}"]
    with httpx.Client(base_url=open_api.base_url, timeout=30) as c:
        for spelled in inside:
            body = {"project_id": project, "data_dir": spelled, "data_dir_change": True}
            r = c.post("/api/v1/backup/create", json=body)
            assert r.status_code in (200, 201, 202, 409), (spelled, r.text)
        for spelled in escaping:
            body = {"project_id": project + "x", "data_dir": spelled}
            r = c.post("/api/v1/backup/create", json=body)
            assert r.status_code == 403, (spelled, r.text)
            body = {"project_id": project, "backup_id": "x", "restore_dir": spelled}
            r = c.post("/api/v1/backup/restore", json=body)
            assert r.status_code in (403, 404, 422), (spelled, r.text)
    assert sorted(os.listdir(outside)) == ["secret"]


def _completed_backup(client: httpx.Client, project: str, src: Path) -> str:
    """Back up `src` (queued or not) and wait until it is completed; its id."""
    r = client.post("/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)})
    assert r.status_code in (200, 201, 202), r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = client.get(f"/api/v1/backup/list/{project}")
        if listing.status_code == 200:
            done = [b["id"] for b in listing.json()["items"] if b["status"] == "completed"]
            if done:
                return done[0]
        time.sleep(0.05)
    raise AssertionError("the backup did not complete")


def _hold_the_slot(api, client: httpx.Client) -> str:
    """Start a restore that waits for a lock it cannot get (an unreadable lock is respected
    until old), so the one slot stays taken for the lock timeout; its project's id."""
    project = "h" + os.urandom(4).hex()
    src = api.allowed / project / "src"
    src.mkdir(parents=True)
    (src / "f").write_text("hold")
    backup_id = _completed_backup(client, project, src)
    locks = api.root / "backups" / project / "locks"
    locks.mkdir(exist_ok=True)
    (locks / "other-1-ffff.json").write_text("not json: an unknown lock")
    body = {
        "project_id": project,
        "backup_id": backup_id,
        "restore_dir": str(api.allowed / project / "out"),
    }
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 202, r.text
    return project


def _queued_create_through_a_swapped_parent(api) -> tuple[dict, list[str], str]:
    """A create queued behind a busy slot, whose data_dir's parent is then replaced by a
    symlink to a directory outside holding `data/secret.txt`: (its job as it ended, the ids
    of completed backups of its project, its project)."""
    project = "q" + os.urandom(4).hex()
    parent = api.allowed / project / "parent"
    data = parent / "data"
    data.mkdir(parents=True)
    (data / "public.txt").write_text("public")
    evil = api.outside / project / "data"
    evil.mkdir(parents=True)
    (evil / "secret.txt").write_text("secret")
    with httpx.Client(base_url=api.base_url, timeout=30) as c:
        _hold_the_slot(api, c)
        r = c.post("/api/v1/backup/create", json={"project_id": project, "data_dir": str(data)})
        assert r.status_code in (200, 201, 202), r.text
        queued = r.json()
        assert queued.get("status") == "queued", queued  # the swap comes after the check
        parent.rename(parent.with_name("parked"))
        parent.symlink_to(evil.parent)  # parent/data now leads outside
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = c.get(f"/api/v1/jobs/{queued['job_id']}").json()
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        items = c.get(f"/api/v1/backup/list/{project}").json().get("items", [])
    return job, [b["id"] for b in items if b["status"] == "completed"], project


@pytest.mark.slow
def test_create_queued_then_its_parent_swapped_for_a_symlink_reads_nothing_outside(one_slot):
    job, completed, project = _queued_create_through_a_swapped_parent(one_slot)
    mgr = one_slot.app.state.ctx.mgr
    for bid in completed:
        names = {e.name for e in mgr.browse_blocking(project, bid)}
        assert "secret.txt" not in names, f"backup {bid} read the outside directory"
    assert job["status"] in ("failed", "completed"), job


@pytest.mark.slow
def test_the_failed_job_of_a_swapped_create_names_no_outside_path(one_slot):
    job, _completed, _project = _queued_create_through_a_swapped_parent(one_slot)
    assert str(one_slot.outside) not in json.dumps(job), job


@pytest.mark.slow
def test_restore_queued_then_its_parent_swapped_for_a_symlink_writes_nothing_outside(
    one_slot,
):
    api = one_slot
    project = "r" + os.urandom(4).hex()
    src = api.allowed / project / "src"
    src.mkdir(parents=True)
    (src / "payload.txt").write_text("payload")
    victim = api.outside / project
    victim.mkdir(parents=True)
    with httpx.Client(base_url=api.base_url, timeout=30) as c:
        backup_id = _completed_backup(c, project, src)
        parent = api.allowed / project / "parent"
        (parent / "target").mkdir(parents=True)
        _hold_the_slot(api, c)
        body = {
            "project_id": project,
            "backup_id": backup_id,
            "restore_dir": str(parent / "target"),
            "overwrite": "always",
            "checkpoint": False,
        }
        r = c.post("/api/v1/backup/restore", json=body)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] == "queued", job
        parent.rename(parent.with_name("parked"))
        (victim / "target").mkdir()
        parent.symlink_to(victim)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            j = c.get(f"/api/v1/jobs/{job['job_id']}").json()
            if j["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
    assert os.listdir(victim / "target") == [], "a queued restore wrote outside"


def test_a_nul_or_overlong_path_is_422_never_500(open_api):
    with httpx.Client(base_url=open_api.base_url) as c:
        for bad in (f"{open_api.allowed}/a\x00b", "/" + "a" * 5000, f"{open_api.allowed}/" * 600):
            r = c.post("/api/v1/backup/create", json={"project_id": "n1", "data_dir": bad})
            assert r.status_code in (403, 404, 409, 422), (bad[:40], r.status_code, r.text)


@pytest.mark.slow
def test_api_delete_racing_a_create_that_dedups_against_it(api):
    """In one server: DELETE of the only backup holding some data while a create of the same
    data runs (every chunk a dedup hit on the packs the reclaim wants to remove). The new
    backup, when completed, restores byte for byte; the server never answers 500."""
    import concurrent.futures

    project = "d" + os.urandom(4).hex()
    src = api.allowed / project / "src"
    src.mkdir(parents=True)
    with api.client() as c, concurrent.futures.ThreadPoolExecutor(2) as pool:
        for round_ in range(3):
            body = os.urandom(1_200_000)
            (src / "f.bin").write_bytes(body)
            victim = _completed_backup(c, project, src)
            before = {b["id"] for b in c.get(f"/api/v1/backup/list/{project}").json()["items"]}
            dele = pool.submit(c.delete, f"/api/v1/backup/{project}/{victim}")
            crea = pool.submit(
                c.post, "/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)}
            )
            rd, rc = dele.result(60), crea.result(60)
            assert rd.status_code < 500 and rc.status_code < 500, (rd.text, rc.text)
            deadline = time.monotonic() + 30
            fresh: list[dict] = []
            while time.monotonic() < deadline:
                items = c.get(f"/api/v1/backup/list/{project}").json()["items"]
                fresh = [b for b in items if b["id"] not in before]
                if fresh and all(b["status"] in ("completed", "failed") for b in fresh):
                    break
                time.sleep(0.05)
            for b in fresh:
                if b["status"] != "completed":
                    continue
                out = api.allowed / project / f"out{round_}"
                r = c.post(
                    "/api/v1/backup/restore",
                    json={"project_id": project, "backup_id": b["id"], "restore_dir": str(out)},
                )
                assert r.status_code == 202, r.text
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    job = c.get(f"/api/v1/jobs/{r.json()['job_id']}").json()
                    if job["status"] not in ("queued", "running"):
                        break
                    time.sleep(0.05)
                assert job["status"] == "succeeded", job
                assert (out / "f.bin").read_bytes() == body
