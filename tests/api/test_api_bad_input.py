"""Every kind of bad input is a 4xx whose JSON body names the field, never a 500."""

from __future__ import annotations

import pytest

from core.models import BackupStatus
from core.repo.repository import Repository

BAD_IDS = ["../x", "a..b", "", "-lead", "x" * 65, "a b", "a/b", "é", ".hidden", "a\x00b"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_ids_in_bodies(client, api, bad):
    r = client.post("/api/v1/backup/create", json={"project_id": bad, "data_dir": str(api.allowed)})
    assert r.status_code == 422, r.text
    assert ["body", "project_id"] in [i["loc"] for i in r.json()["detail"]]
    body = {"project_id": "ok", "backup_id": bad, "restore_dir": str(api.allowed)}
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 422, r.text
    assert ["body", "backup_id"] in [i["loc"] for i in r.json()["detail"]]


@pytest.mark.parametrize("bad", ["a..b", "-lead", "x" * 65, "a%20b", "%C3%A9", ".hidden"])
def test_invalid_ids_in_paths(client, bad):
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


def test_unknown_project_and_backup_are_404_naming_the_field(
    client, api, project, sample_tree, backup_of, locs
):
    unknown = project + "-none"
    assert locs(client.get(f"/api/v1/backup/list/{unknown}")) == [["path", "project_id"]]
    r = client.get(f"/api/v1/backup/info/{unknown}/b1")
    assert r.status_code == 404 and locs(r) == [["path", "project_id"]]
    r = client.delete(f"/api/v1/backup/{unknown}/b1")
    assert r.status_code == 404 and locs(r) == [["path", "project_id"]]
    body = {"project_id": unknown, "backup_id": "b1", "restore_dir": str(api.allowed / "t")}
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 404 and locs(r) == [["body", "project_id"]]

    backup_of(project, sample_tree(api.allowed / project / "src"))
    r = client.get(f"/api/v1/backup/info/{project}/nosuchbackup")
    assert r.status_code == 404 and locs(r) == [["path", "backup_id"]]
    r = client.delete(f"/api/v1/backup/{project}/nosuchbackup")
    assert r.status_code == 404 and locs(r) == [["path", "backup_id"]]
    body = {
        "project_id": project,
        "backup_id": "nosuchbackup",
        "restore_dir": str(api.allowed / "t"),
    }
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 404 and locs(r) == [["body", "backup_id"]]
    assert not (api.allowed / "t").exists()
    r = client.get("/api/v1/jobs/0123456789abcdef")
    assert r.status_code == 404 and locs(r) == [["path", "job_id"]]
    r = client.get("/api/v1/jobs/not-a-job")
    assert r.status_code == 422 and locs(r) == [["path", "job_id"]]


def test_missing_data_dir_and_data_dir_a_file(client, api, project, locs):
    r = client.post(
        "/api/v1/backup/create",
        json={"project_id": project, "data_dir": str(api.allowed / "missing")},
    )
    assert r.status_code == 422 and locs(r) == [["body", "data_dir"]]
    assert "does not exist" in r.json()["detail"][0]["msg"]
    f = api.allowed / f"{project}.txt"
    f.write_text("x")
    r = client.post("/api/v1/backup/create", json={"project_id": project, "data_dir": str(f)})
    assert r.status_code == 422 and locs(r) == [["body", "data_dir"]]


def test_restore_onto_a_file(client, api, project, sample_tree, backup_of, locs):
    meta = backup_of(project, sample_tree(api.allowed / project / "src"))
    f = api.allowed / project / "a-file"
    f.write_text("keep me")
    body = {"project_id": project, "backup_id": meta["id"], "restore_dir": str(f)}
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 422 and locs(r) == [["body", "restore_dir"]]
    body["restore_dir"] = str(f / "below" / "a-file")
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 422 and locs(r) == [["body", "restore_dir"]]
    assert "a file" in r.json()["detail"][0]["msg"]
    assert f.read_text() == "keep me"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data_dir": "/x"}, "project_id"),
        ({"project_id": "p"}, "data_dir"),
        ({"project_id": "p", "data_dir": ""}, "data_dir"),
        ({"project_id": "p", "data_dir": "/x", "backup_type": "weekly"}, "backup_type"),
        ({"project_id": "p", "data_dir": "/x", "tags": ["a"]}, "tags"),
        ({"project_id": "p", "data_dir": "/x", "tags": {"k": 1}}, "tags"),
        ({"project_id": "p", "data_dir": "/x", "tags": {f"k{i}": "v" for i in range(40)}}, "tags"),
        ({"project_id": "p", "data_dir": "/x", "tags": {"k": "v" * 300}}, "tags"),
        ({"project_id": "p", "data_dir": "/x", "tags": {"k": "line\nbreak"}}, "tags"),
        ({"project_id": "p", "data_dir": "/x", "extra": {"a": "x" * 20000}}, "extra"),
        ({"project_id": "p", "data_dir": "/x", "extra": "text"}, "extra"),
        ({"project_id": "p", "data_dir": "/x", "unknown": 1}, "unknown"),
        ({"project_id": "p", "data_dir": "/x", "parent_backup_id": "../up"}, "parent_backup_id"),
        ({"project_id": "p", "data_dir": "/x", "excludes": [""]}, "excludes"),
        ({"project_id": 5, "data_dir": "/x"}, "project_id"),
    ],
)
def test_create_body_validation(client, body, field):
    r = client.post("/api/v1/backup/create", json=body)
    assert r.status_code == 422, r.text
    items = r.json()["detail"]
    assert any(item["loc"][:2] == ["body", field] for item in items), items
    assert all(set(item) == {"loc", "msg", "type"} for item in items)  # no echoed input


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"project_id": "p", "backup_id": "b"}, "restore_dir"),
        (
            {"project_id": "p", "backup_id": "b", "restore_dir": "/x", "overwrite": "sometimes"},
            "overwrite",
        ),
        ({"project_id": "p", "backup_id": "b", "restore_dir": "/x", "dry_run": "maybe"}, "dry_run"),
        ({"project_id": "p", "backup_id": "b", "restore_dir": "/x", "paths": "one"}, "paths"),
    ],
)
def test_restore_body_validation(client, body, field):
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 422, r.text
    assert any(item["loc"][:2] == ["body", field] for item in r.json()["detail"])


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"null", b'"text"', b""])
def test_malformed_bodies(client, raw):
    r = client.post(
        "/api/v1/backup/create", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"offset": -1}, "offset"),
        ({"type": "weekly"}, "type"),
        ({"status": "bogus"}, "status"),
        ({"since": "last tuesday"}, "since"),
        ({"since": "99999999d"}, "since"),  # before the year 1
        ({"tag": "=prod"}, "tag"),
        ({"until": "2026-13-45"}, "until"),
        ({"q": "x" * 300}, "q"),
    ],
)
def test_list_query_validation(client, params, field):
    r = client.get("/api/v1/backup/list/p", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", field]


def test_delete_latest_is_refused(client, locs):
    r = client.delete("/api/v1/backup/p/latest")
    assert r.status_code == 422 and locs(r) == [["path", "backup_id"]]


def test_restore_of_a_failed_backup_is_409(client, api, project, sample_tree, backup_of, locs):
    meta = backup_of(project, sample_tree(api.allowed / project / "src"))
    repo = Repository(api.root, project)
    failed = repo.read_metadata(meta["id"]).model_copy(
        update={"status": BackupStatus.FAILED, "error_message": "simulated failure"}
    )
    repo.write_metadata(failed)
    target = api.allowed / project / "target"
    for dry_run in (False, True):
        body = {
            "project_id": project,
            "backup_id": meta["id"],
            "restore_dir": str(target),
            "dry_run": dry_run,
        }
        r = client.post("/api/v1/backup/restore", json=body)
        assert r.status_code == 409, r.text
        assert locs(r) == [["body", "backup_id"]] and "failed" in r.json()["detail"][0]["msg"]
    assert not target.exists()


def test_unknown_routes_and_methods(client):
    r = client.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json()["detail"][0]["type"] == "not_found"
    r = client.put("/api/v1/backup/create", json={})
    assert r.status_code == 405 and r.json()["detail"][0]["type"] == "method_not_allowed"


def test_busy_project_is_409(api, client, project, sample_tree, backup_of, job_of):
    """While another process holds the project's exclusive lock (a delete, say), a create is
    refused with 409, and a restore job ends failed with 409, after the core's lock wait."""
    import threading

    from core.repo import locks

    src = sample_tree(api.allowed / project / "src")
    meta = backup_of(project, src)
    lock = locks.acquire(Repository(api.root, project).store, exclusive=True, operation="delete")
    results: dict[str, object] = {}
    try:

        def create():
            with api.client() as c:
                results["create"] = c.post(
                    "/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)}
                )

        thread = threading.Thread(target=create)
        thread.start()
        body = {
            "project_id": project,
            "backup_id": meta["id"],
            "restore_dir": str(api.allowed / project / "out"),
        }
        r = client.post("/api/v1/backup/restore", json=body)
        assert r.status_code == 202, r.text
        job = job_of(r.json()["job_id"])
        thread.join(timeout=30)
    finally:
        lock.release()
    assert job["status"] == "failed" and job["error"]["status_code"] == 409, job
    r = results["create"]
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "busy", r.text
    assert client.get(f"/api/v1/backup/list/{project}").json()["total"] == 1


def test_a_name_longer_than_any_directory_holds_is_422(client, api, locs):
    """A component past NAME_MAX under an allowed directory: the field named, never a 500."""
    long = str(api.allowed / ("n" * 300) / "x")
    r = client.post("/api/v1/backup/create", json={"project_id": "p", "data_dir": long})
    assert r.status_code == 422 and locs(r) == [["body", "data_dir"]], r.text
    body = {"project_id": "p", "backup_id": "latest", "restore_dir": long, "dry_run": True}
    r = client.post("/api/v1/backup/restore", json=body)
    assert r.status_code == 422 and locs(r) == [["body", "restore_dir"]], r.text
