"""DELETE /api/v1/projects/{id}?backups=N over a real server: the count the client showed is
the confirmation (a different one is a 409 and deletes nothing), an unknown project a 404,
and the project is gone from the listing after."""

from __future__ import annotations


def test_delete_a_project_over_http(api, client, project, backup_of):
    src = api.allowed / project / "src"
    src.mkdir(parents=True)
    (src / "f.txt").write_text("x" * 5000)
    backup_of(project, src)
    backup_of(project, src)
    base = f"/api/v1/projects/{project}"
    r = client.delete(base)
    assert r.status_code == 422  # no count: no confirmation
    r = client.delete(base, params={"backups": 1})
    assert r.status_code == 409 and "now has 2 backups" in r.text
    assert client.get(f"/api/v1/backup/list/{project}").json()["total"] == 2
    r = client.delete(base, params={"backups": 2})
    assert r.status_code == 200, r.text
    assert r.json()["backups_deleted"] == 2
    assert project not in [p["project_id"] for p in client.get("/api/v1/projects").json()]
    assert not (api.root / "backups" / project).exists()
    r = client.delete(base, params={"backups": 0})
    assert r.status_code == 404


def test_rename_a_project_over_http(api, client, project, backup_of):
    src = api.allowed / project / "src"
    src.mkdir(parents=True)
    (src / "f.txt").write_text("y" * 3000)
    meta = backup_of(project, src)
    new = project + "-renamed"
    r = client.post(f"/api/v1/projects/{project}/rename", json={"new_id": "../x"})
    assert r.status_code == 422
    r = client.post(f"/api/v1/projects/{project}/rename", json={"new_id": new})
    assert r.status_code == 200, r.text
    assert r.json()["project_id"] == new and r.json()["backups"] == 1
    listing = client.get(f"/api/v1/backup/list/{new}").json()
    assert [b["id"] for b in listing["items"]] == [meta["id"]]
    assert listing["items"][0]["project_id"] == new
    r = client.post(f"/api/v1/projects/{project}/rename", json={"new_id": "again"})
    assert r.status_code == 404
