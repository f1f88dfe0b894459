"""Retention over a real server: the policy (GET/PUT/DELETE), forget (dry run, then for
real), the removed backups and undelete, protect/unprotect, and the refusals as 4xx."""

from __future__ import annotations


def test_policy_forget_undelete_protect_over_http(api, client, project, backup_of):
    src = api.allowed / project / "src"
    src.mkdir(parents=True)
    ids = []
    for day in range(1, 5):
        (src / "f.txt").write_text(f"day {day}\n" * 1000)
        meta = backup_of(project, src, created_at=f"2024-05-0{day}T10:00:00Z", tags={"d": str(day)})
        assert meta["status"] == "completed" and meta["created_at"].startswith(f"2024-05-0{day}")
        ids.append(meta["id"])
    base = f"/api/v1/projects/{project}/policy"
    assert client.get(base).json() == {"project_id": project, "policy": None}
    r = client.put(base, json={"keep_last": 2, "keep_tags": ["d=1"]})
    assert r.status_code == 200, r.text
    assert client.get(base).json()["policy"]["keep_tags"] == ["d=1"]

    r = client.post(f"/api/v1/backup/forget/{project}", json={"dry_run": True})
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["dry_run"] and preview["removed"] == [ids[1]]
    assert {d["backup_id"]: d["reasons"] for d in preview["decisions"]}[ids[0]] == ["tag d=1"]
    listing = client.get(f"/api/v1/backup/list/{project}").json()
    assert listing["total"] == 4

    r = client.post(f"/api/v1/backup/forget/{project}", json={})
    assert r.status_code == 200, r.text
    assert r.json()["removed"] == [ids[1]]
    assert client.get(f"/api/v1/backup/list/{project}").json()["total"] == 3
    removed = client.get(f"/api/v1/backup/removed/{project}").json()
    assert [m["id"] for m in removed] == [ids[1]] and removed[0]["purge_after"]
    r = client.post(f"/api/v1/backup/undelete/{project}/{ids[1]}")
    assert r.status_code == 200 and r.json()["removed_at"] is None

    r = client.post(f"/api/v1/backup/protect/{project}/{ids[1]}")
    assert r.status_code == 200 and r.json()["protected"] is True
    r = client.delete(f"/api/v1/backup/{project}/{ids[1]}")
    assert r.status_code == 409 and "protected" in r.text
    again = client.post(f"/api/v1/backup/forget/{project}", json={"dry_run": True}).json()
    assert again["removed"] == []
    r = client.post(f"/api/v1/backup/unprotect/{project}/{ids[1]}")
    assert r.status_code == 200 and r.json()["protected"] is False

    assert client.delete(base).json() == {"project_id": project, "policy": None}
    assert client.get(base).json()["policy"] is None


def test_refusals_are_client_errors(api, client, project, backup_of):
    src = api.allowed / project / "src"
    src.mkdir(parents=True)
    (src / "f.txt").write_text("x")
    backup_of(project, src)
    forget = f"/api/v1/backup/forget/{project}"
    r = client.post(forget, json={})
    assert r.status_code == 422 and "no retention policy" in r.text
    r = client.post(forget, json={"policy": {"keep_tags": ["env=prod"]}})
    assert r.status_code == 422 and "keeps none of the 1 completed" in r.text
    r = client.put(f"/api/v1/projects/{project}/policy", json={"keep_within": "a week"})
    assert r.status_code == 422 and "invalid duration" in r.text
    r = client.put(f"/api/v1/projects/{project}/policy", json={})
    assert r.status_code == 422 and "no rule" in r.text
    assert client.get("/api/v1/projects/nope-nope/policy").status_code == 404
    assert client.post("/api/v1/backup/forget/nope-nope", json={}).status_code == 404
    r = client.post(f"/api/v1/backup/undelete/{project}/latest")
    assert r.status_code == 409 and "not removed" in r.text
    assert client.get(f"/api/v1/backup/list/{project}").json()["total"] == 1
