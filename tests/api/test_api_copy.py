"""POST /api/v1/backup/copy/{project_id} over a real server: a copy to a bucket (a real
SeaweedFS) runs as a job to its end and the target then holds the backup (opened by another
manager, restored byte for byte); a local target is refused (403) and nothing is written;
an unknown project is a 404 and a bad body a 422."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.manager import BackupManager
from core.models import RestoreRequest


def _restored(tmp: Path, target: Path | str, project: str, backup_id: str) -> Path:
    """Open the copy's repository with a manager of its own and restore the backup."""
    mgr = BackupManager(tmp / "reader-root", repository=target)
    out = tmp / "restored"
    asyncio.run(
        mgr.restore(RestoreRequest(project_id=project, backup_id=backup_id, restore_dir=str(out)))
    )
    return out


def test_copy_to_a_local_directory_is_refused_even_an_allowed_one(
    api, client, project, sample_tree, backup_of
):
    """The copy writes its objects by path, where a symlink swapped in meanwhile could lead
    them out of every allowed directory: over the API a copy goes to a bucket only."""
    backup_of(project, sample_tree(api.allowed / project / "src"))
    target = api.allowed / project / "offsite"
    r = client.post(f"/api/v1/backup/copy/{project}", json={"to": str(target)})
    assert r.status_code == 403, r.text
    assert "only to object storage" in r.json()["detail"][0]["msg"]
    assert not target.exists()


def test_copy_outside_the_allowed_directories_is_refused_and_writes_nothing(
    api, client, project, sample_tree, backup_of
):
    src = sample_tree(api.allowed / project / "src")
    backup_of(project, src)
    outside = api.outside / project
    escape = api.allowed / project / "escape"
    escape.symlink_to(api.outside)  # a link under the allowed directory leading out of it
    attempts = [
        str(outside),
        str(api.allowed / project / ".." / ".." / "outside" / project),
        str(escape / project),
        f"file://{outside}",  # a URL naming a local path is no way around the rule
    ]
    for to in attempts:
        r = client.post(f"/api/v1/backup/copy/{project}", json={"to": to})
        assert r.status_code in (403, 422), (to, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "to"], to
    assert (
        client.post(f"/api/v1/backup/copy/{project}", json={"to": str(outside)}).status_code == 403
    )
    assert list(api.outside.iterdir()) == []


def test_copy_of_an_unknown_project_or_backup_is_404(
    api, client, project, sample_tree, backup_of, locs, s3_url
):
    target = s3_url
    r = client.post(f"/api/v1/backup/copy/{project}", json={"to": target})
    assert r.status_code == 404, r.text
    assert locs(r) == [["path", "project_id"]]

    backup_of(project, sample_tree(api.allowed / project / "src"))
    r = client.post(
        f"/api/v1/backup/copy/{project}",
        json={"to": target, "backup_ids": ["20000101T000000-nope"]},
    )
    assert r.status_code == 404, r.text
    assert locs(r) == [["body", "backup_ids"]]


def test_copy_with_a_bad_body_is_422(api, client, project, sample_tree, backup_of, locs):
    backup_of(project, sample_tree(api.allowed / project / "src"))
    target = "s3://nexus-test/never-written"
    url = f"/api/v1/backup/copy/{project}"
    bad = [
        ({}, ["body", "to"]),
        ({"to": ""}, ["body", "to"]),
        ({"to": "relative/dir"}, ["body", "to"]),
        ({"to": "ftp://host/x"}, ["body", "to"]),
        ({"to": "memory://x"}, ["body", "to"]),
        ({"to": target, "backup_ids": []}, ["body", "backup_ids"]),
        ({"to": target, "backup_ids": ["../etc"]}, ["body", "backup_ids", 0]),
        ({"to": target, "backup_ids": "latest"}, ["body", "backup_ids"]),
        ({"to": target, "extra": 1}, ["body", "extra"]),
    ]
    for body, loc in bad:
        r = client.post(url, json=body)
        assert r.status_code == 422, (body, r.text)
        assert loc in locs(r), (body, r.json())
    r = client.post("/api/v1/backup/copy/..", json={"to": target})
    assert r.status_code in (404, 422)


def test_copy_to_s3_restores_byte_exact(
    api, client, project, sample_tree, tree_of, backup_of, job_of, tmp_path, s3_url
):
    """An s3:// target is taken as given (with the server's AWS variables): a real SeaweedFS."""
    src = sample_tree(api.allowed / project / "src")
    meta = backup_of(project, src)
    r = client.post(f"/api/v1/backup/copy/{project}", json={"to": s3_url, "backup_ids": None})
    assert r.status_code == 202, r.text
    job = job_of(r.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["target"] == s3_url and [c["backup_id"] for c in job["copied"]["copied"]] == [
        meta["id"]
    ]
    assert tree_of(_restored(tmp_path, s3_url, project, meta["id"])) == tree_of(src)

    # asked again, nothing travels: the backup is already whole in the target
    again = job_of(
        client.post(
            f"/api/v1/backup/copy/{project}", json={"to": s3_url, "backup_ids": [meta["id"]]}
        ).json()["job_id"]
    )
    assert again["status"] == "succeeded", again
    assert again["copied"]["already_there"] == [meta["id"]] and again["copied"]["bytes_sent"] == 0


def test_copy_to_a_bucket_that_does_not_exist_names_the_bucket(
    api, client, project, sample_tree, backup_of, s3_url
):
    """A target that cannot be written is the target's fault, said of the target: never an
    'unknown project' (the project exists), and nothing of the source changes."""
    meta = backup_of(project, sample_tree(api.allowed / project / "src"))
    r = client.post(f"/api/v1/backup/copy/{project}", json={"to": "s3://no-such-bucket-nx/p"})
    assert r.status_code in (400, 502, 503), r.text
    assert "no-such-bucket-nx" in r.json()["detail"][0]["msg"], r.text
    assert "does not exist" in r.json()["detail"][0]["msg"], r.text
    listed = client.get(f"/api/v1/backup/list/{project}")
    assert listed.status_code == 200, listed.text
    assert meta["id"] in listed.text
