"""The spec's five endpoints end to end over a real server: create (202), poll info to
COMPLETED, list, restore byte-exact (202 job, and the 200 dry run), delete (then 404)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import httpx


def test_create_poll_list_restore_delete(api, client, project, sample_tree, tree_of, poll, job_of):
    src = sample_tree(api.allowed / project / "src")
    r = client.post(
        "/api/v1/backup/create",
        json={
            "project_id": project,
            "backup_type": "full",
            "data_dir": str(src),
            "tags": {"env": "test"},
            "extra": {"note": "first", "n": 1},
        },
    )
    assert r.status_code == 202, r.text
    meta = r.json()
    backup_id = meta["id"]
    assert meta["project_id"] == project
    assert meta["status"] in ("pending", "running")
    assert meta["tags"]["env"] == "test" and meta["extra"] == {"note": "first", "n": 1}
    assert r.headers["location"] == f"/api/v1/backup/info/{project}/{backup_id}"

    def completed():
        info = client.get(f"/api/v1/backup/info/{project}/{backup_id}").json()
        return info if info["status"] == "completed" else None

    info = poll(completed, what="the backup to complete")
    assert info["files_count"] >= 5
    assert info["checksum"]
    assert info["completed_at"]
    assert info["manifest"]["files"] >= 5
    assert info["progress"] is None  # nothing running any more

    listing = client.get(f"/api/v1/backup/list/{project}").json()
    assert listing["total"] == 1 and [m["id"] for m in listing["items"]] == [backup_id]

    # dry run: 200 with the preview, nothing written
    target = api.allowed / project / "restored"
    body = {"project_id": project, "backup_id": backup_id, "restore_dir": str(target)}
    r = client.post("/api/v1/backup/restore", json={**body, "dry_run": True})
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True
    assert not target.exists() or not any(target.iterdir())

    # the real one: 202 with a job, polled to its result
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("running", "succeeded") and job["kind"] == "restore"
    assert r.headers["location"] == f"/api/v1/jobs/{job['job_id']}"

    job = job_of(job["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["backup_id"] == backup_id and job["finished_at"]
    assert tree_of(target) == tree_of(src)

    r = client.delete(f"/api/v1/backup/{project}/{backup_id}")
    assert r.status_code == 200, r.text
    assert r.json()["backup_id"] == backup_id
    r = client.get(f"/api/v1/backup/info/{project}/{backup_id}")
    assert r.status_code == 404
    assert r.json()["detail"][0]["loc"] == ["path", "backup_id"]
    assert client.get(f"/api/v1/backup/list/{project}").json()["total"] == 0


def test_list_filters_paging_and_newest_first(api, client, project, sample_tree, backup_of):
    src = sample_tree(api.allowed / project / "src")
    first = backup_of(project, src, tags={"k": "a"})
    second = backup_of(project, src, tags={"k": "b"}, backup_type="snapshot")
    third = backup_of(project, src, backup_type="checkpoint", name="before-upgrade")
    made = (first, second, third)
    assert {m["status"] for m in made} == {"completed"}, [
        (m["type"], m["status"], m.get("error_message")) for m in made
    ]

    def ids(**params):
        r = client.get(f"/api/v1/backup/list/{project}", params=params)
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["items"]]

    assert ids() == [third["id"], second["id"], first["id"]]
    assert ids(limit=1) == [third["id"]]
    assert ids(limit=1, offset=1) == [second["id"]]
    assert ids(offset=5) == []
    assert client.get(f"/api/v1/backup/list/{project}", params={"limit": 1}).json()["total"] == 3
    assert ids(type="snapshot") == [second["id"]]
    assert ids(status="completed") == [third["id"], second["id"], first["id"]]
    assert ids(status="failed") == []
    assert ids(tag="k=a") == [first["id"]]
    assert ids(tag="k") == [second["id"], first["id"]]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert ids(since=future) == []
    assert len(ids(until=future)) == 3
    assert ids(since="2000-01-01") == [third["id"], second["id"], first["id"]]  # date, no zone
    assert ids(q=first["id"]) == [first["id"]]

    latest = client.get(f"/api/v1/backup/info/{project}/latest").json()
    assert latest["id"] == third["id"]


def test_projects_and_health(api, client, project, sample_tree, backup_of):
    backup_of(project, sample_tree(api.allowed / project / "src"))
    r = client.get("/api/v1/projects")
    assert r.status_code == 200
    mine = [p for p in r.json() if p["project_id"] == project]
    assert len(mine) == 1 and mine[0]["backups"] == 1

    r = httpx.get(f"{api.base_url}/api/v1/health")  # no token needed
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert "server" not in r.headers


def test_incremental_with_parent(api, client, project, sample_tree, backup_of, tree_of, job_of):
    src = sample_tree(api.allowed / project / "src")
    full = backup_of(project, src)
    (src / "hello.txt").write_text("changed\n")
    (src / "new.txt").write_text("new\n")
    inc = backup_of(project, src, backup_type="incremental", parent_backup_id=full["id"])
    assert inc["status"] == "completed", inc
    assert inc["parent_backup_id"] == full["id"]
    target = api.allowed / project / "out"
    r = client.post(
        "/api/v1/backup/restore",
        json={"project_id": project, "backup_id": inc["id"], "restore_dir": str(target)},
    )
    assert r.status_code == 202, r.text
    job = job_of(r.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert tree_of(target) == tree_of(src)


def test_openapi_document(api, client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/backup/create", "post"),
        ("/api/v1/backup/restore", "post"),
        ("/api/v1/backup/list/{project_id}", "get"),
        ("/api/v1/backup/info/{project_id}/{backup_id}", "get"),
        ("/api/v1/backup/{project_id}/{backup_id}", "delete"),
        ("/api/v1/projects", "get"),
        ("/api/v1/health", "get"),
        ("/api/v1/jobs/{job_id}", "get"),
        ("/api/v1/events/{project_id}", "get"),
    ]:
        assert method in paths[path], path
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert paths["/api/v1/health"]["get"]["security"] == []
    create = paths["/api/v1/backup/create"]["post"]["responses"]
    assert {"202", "401", "403", "409", "422"} <= set(create)
    restore = paths["/api/v1/backup/restore"]["post"]["responses"]
    assert {"200", "202", "403", "404", "409"} <= set(restore)
    assert httpx.get(f"{api.base_url}/openapi.json").status_code == 401


def test_info_shows_progress_while_the_backup_runs(api, client, project, sample_tree, poll):
    """The backup is held at its start (a log subscriber blocks the core's worker thread
    right after it logged "started"), so info is seen mid-run, deterministically."""
    import threading

    src = sample_tree(api.allowed / project / "src")
    hold, held = threading.Event(), threading.Event()

    def gate(record):
        if (
            record.project_id == project
            and record.operation == "create"
            and "started" in record.message
        ):
            held.set()
            hold.wait(timeout=30)

    unsubscribe = api.app.state.ctx.mgr.logger.subscribe(gate)
    try:
        r = client.post("/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)})
        assert r.status_code == 202, r.text
        backup_id = r.json()["id"]
        assert held.wait(timeout=30)
        info = client.get(f"/api/v1/backup/info/{project}/{backup_id}").json()
        assert info["status"] in ("pending", "running")
        assert info["progress"]["operation"] == "create"
        assert info["progress"]["backup_id"] == backup_id
        listing = client.get(f"/api/v1/backup/list/{project}").json()
        assert listing["items"][0]["status"] in ("pending", "running")
    finally:
        hold.set()
        unsubscribe()

    def completed():
        info = client.get(f"/api/v1/backup/info/{project}/{backup_id}").json()
        return info if info["status"] == "completed" else None

    assert poll(completed)["progress"] is None


def test_a_backup_failing_after_202_is_failed_in_info_and_logged(
    api, client, project, sample_tree, poll, caplog
):
    """The repository's pack directory turns into a file after the 202: the backup ends FAILED
    with its reason, and the server logs the task's error instead of losing it."""
    import logging
    import shutil
    import threading

    src = sample_tree(api.allowed / project / "src")
    held = threading.Event()

    def gate(record):
        if (
            record.project_id == project
            and record.operation == "create"
            and "started" in record.message
        ):
            packs = api.root / "backups" / project / "packs"  # layout of docs/CONTRACT.md
            shutil.rmtree(packs, ignore_errors=True)
            packs.write_text("not a directory")
            held.set()

    unsubscribe = api.app.state.ctx.mgr.logger.subscribe(gate)
    try:
        with caplog.at_level(logging.WARNING, logger="nexus_backup.api"):
            r = client.post(
                "/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)}
            )
            assert r.status_code == 202, r.text
            backup_id = r.json()["id"]

            def finished():
                meta = client.get(f"/api/v1/backup/info/{project}/{backup_id}").json()
                return meta if meta["status"] in ("completed", "failed") else None

            meta = poll(finished)
            poll(lambda: any(f"create {project}" in m for m in caplog.messages), what="the log")
    finally:
        unsubscribe()
    assert held.is_set()
    assert meta["status"] == "failed" and meta["error_message"], meta


SPEC_METADATA_FIELDS = {
    "id",
    "project_id",
    "type",
    "status",
    "created_at",
    "completed_at",
    "size_bytes",
    "checksum",
    "parent_backup_id",
    "files_count",
    "error_message",
    "tags",
    "extra",
}


def test_info_answers_the_spec_fields_at_the_top_level(
    api, client, project, sample_tree, backup_of
):
    """A client written from the specification reads info's `status` where create and list
    put it; the manifest summary, the chain and the progress sit beside the fields."""
    src = sample_tree(api.allowed / project / "src")
    first = backup_of(project, src)
    second = backup_of(project, src, backup_type="incremental", tags={"k": "v"})
    info = client.get(f"/api/v1/backup/info/{project}/{second['id']}").json()
    listed = client.get(f"/api/v1/backup/list/{project}").json()["items"][0]
    assert info.keys() >= SPEC_METADATA_FIELDS
    assert "metadata" not in info
    assert {k: info[k] for k in SPEC_METADATA_FIELDS} == {
        k: listed[k] for k in SPEC_METADATA_FIELDS
    }
    assert info["status"] == "completed" and info["parent_backup_id"] == first["id"]
    assert info["tags"] == {"k": "v"}
    assert info["manifest"]["files"] == info["files_count"]
    assert info["parent_chain"] == [first["id"]]
    assert info["progress"] is None


async def test_info_of_a_backup_whose_project_config_is_damaged_says_why(
    api, client, project, sample_tree
):
    """Its metadata stands alone and reads "completed", but nothing of the project restores
    until config.json is repaired: info says why (`config_problem`), as the CLI's info and
    the projects listing (`unreadable`) do; a healthy project's is null. (Backed up by an
    engine of the test's own and damaged before the server first opens the project: a
    server that has read the config keeps it, and works on.)"""
    from core.manager import BackupManager
    from core.models import CreateRequest

    src = sample_tree(api.allowed / project / "src")
    mgr = BackupManager(api.root)
    meta = await mgr.create(CreateRequest(project_id=project, data_dir=str(src)))
    healthy = await mgr.create(CreateRequest(project_id=project + "-ok", data_dir=str(src)))
    (api.root / "backups" / project / "config.json").write_text("garbage, not JSON")
    r = client.get(f"/api/v1/backup/info/{project}/{meta.id}")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["status"] == "completed"
    assert "config.json" in info["config_problem"]
    listed = {p["project_id"]: p for p in client.get("/api/v1/projects").json()}
    assert listed[project]["unreadable"] == info["config_problem"]
    ok = client.get(f"/api/v1/backup/info/{project}-ok/{healthy.id}").json()
    assert ok["config_problem"] is None


def test_bare_tags_follow_the_engine_rule(api, client, project, sample_tree, backup_of, locs):
    """A bare tag is a tag with an empty value, as the CLI's `--tag nightly` and the TUI make
    it; a key with '=' or ',' is refused by the same rule, naming the field."""
    src = sample_tree(api.allowed / project / "src")
    meta = backup_of(project, src, tags={"nightly": "", "env": "prod"})
    assert meta["tags"] == {"nightly": "", "env": "prod"}
    found = client.get(f"/api/v1/backup/list/{project}", params={"tag": "nightly"}).json()
    assert [m["id"] for m in found["items"]] == [meta["id"]]
    for key in ("a=b", "a,b"):
        body = {"project_id": project, "data_dir": str(src), "tags": {key: "v"}}
        r = client.post("/api/v1/backup/create", json=body)
        assert r.status_code == 422 and locs(r) == [["body", "tags"]], r.text


def test_a_created_at_without_a_zone_is_utc_and_every_listing_still_answers(
    api, client, project, sample_tree, backup_of
):
    """A client's time without an offset is UTC (the zone of every stored time): stored
    aware, so that listing the project, and every project, still sorts and compares."""
    src = sample_tree(api.allowed / project / "src")
    aware = backup_of(project, src)
    naive = backup_of(project, src, created_at="2024-01-01T00:00:00")
    assert naive["status"] == "completed"
    assert datetime.fromisoformat(naive["created_at"]) == datetime(2024, 1, 1, tzinfo=UTC)
    r = client.get(f"/api/v1/backup/list/{project}")
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["items"]] == [aware["id"], naive["id"]]
    assert client.get("/api/v1/projects").status_code == 200
    r = client.get(f"/api/v1/backup/list/{project}", params={"until": "2024-06-01T00:00:00"})
    assert [m["id"] for m in r.json()["items"]] == [naive["id"]]


def test_a_restore_past_damaged_data_is_a_failed_job_that_names_it_and_keeps_the_rest(
    api, client, project, tree_of, job_of, backup_of
):
    """A pack of the backup truncated on the server's disk: the restore job restores every
    other file, and fails (409, "damaged") naming the file it could not, its result kept: a
    client that checks `status` never takes it for a whole restore."""
    src = api.allowed / project / "src"
    src.mkdir(parents=True)
    (src / "old.bin").write_bytes(os.urandom(400_000))
    packs = api.root / "backups" / project / "packs"
    backup_of(project, src)
    first = {p for p in packs.rglob("*") if p.is_file()}
    (src / "new.txt").write_text("healthy\n")
    meta = backup_of(project, src)
    (bad,) = first
    os.truncate(bad, bad.stat().st_size // 2)
    target = api.allowed / project / "restored"
    body = {"project_id": project, "backup_id": meta["id"], "restore_dir": str(target)}
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 202, r.text
    job = job_of(r.json()["job_id"])
    assert job["status"] == "failed" and job["error"]["status_code"] == 409, job
    assert "old.bin" in job["error"]["msg"] and "\n" not in job["error"]["msg"]
    assert job["result"]["files_damaged"] == 1 and job["result"]["verified"] is False
    assert [d["path"] for d in job["result"]["damaged_files"]] == ["old.bin"]
    got = tree_of(target)
    assert "old.bin" not in {k.decode() if isinstance(k, bytes) else k for k in got}
    assert (target / "new.txt").read_text() == "healthy\n"
