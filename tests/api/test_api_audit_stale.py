"""An audit of a long-running server whose projects ANOTHER process changes under it: the real
`nexus-backup` CLI, as subprocesses, deletes a project the server has open (its config, its
unlocked key and its index cached in the BackupManager) and makes one of that name anew,
plain or encrypted; renames it; changes its keys; rebuilds its index; deletes and forgets its
backups; replaces its config.json by a newer format's or by garbage. The server is then asked
to list, back up, restore and delete. After each, a fresh CLI process checks the project with
`check --read-data` and restores every backup byte for byte (docs/design.md §4, I18).

Real uvicorn servers on 127.0.0.1, real CLI processes on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest_of import conftest_of

from api.app import create_app
from core.errors import Conflict
from core.manage.locking import locked
from core.manager import BackupManager

_h = conftest_of(__file__)
TOKEN, create_backup, running = _h.TOKEN, _h.create_backup, _h.running
snapshot, wait_until, write_sample_tree = _h.snapshot, _h.wait_until, _h.write_sample_tree

REPO = Path(__file__).resolve().parents[2]
PW = "stale audit password"


def nb(root: Path, *args: str, pw: str = PW, new: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env.update(PYTHONUNBUFFERED="1", NEXUS_BACKUP_PASSWORD=pw)
    if new is not None:
        env["NEXUS_BACKUP_NEW_PASSWORD"] = new
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args[4:], r.returncode, r.stdout, r.stderr)
    return r.stdout


def listed(root: Path, project: str, pw: str = PW) -> list[dict]:
    return json.loads(ok(nb(root, "--json", "list", project, pw=pw)))


def every_backup_restores(root: Path, project: str, data: Path, tmp: Path, pw: str = PW) -> None:
    """What a user checks afterwards, with a fresh process: the project checks whole (every
    chunk re-read) and every completed backup restores as the data directory is now."""
    r = nb(root, "check", project, "--read-data", pw=pw)
    assert r.returncode == 0, (r.stdout, r.stderr)
    backups = listed(root, project, pw)
    assert backups and all(b["status"] == "completed" for b in backups), backups
    for b in backups:
        target = tmp / f"restored-{project}-{b['id']}"
        ok(nb(root, "restore", project, b["id"], str(target), pw=pw))
        assert snapshot(target) == snapshot(data)


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


@pytest.fixture
def site(tmp_path: Path) -> dict:
    root, allowed = tmp_path / "repo", tmp_path / "allowed"
    root.mkdir()
    data = write_sample_tree(allowed / "data")
    return {"root": root, "allowed": allowed, "data": data, "tmp": tmp_path}


def served(site: dict):
    app = create_app(site["root"], token=TOKEN, allowed_dirs=[site["allowed"]], password=PW)
    return running(app)


def tree_bytes(base: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and "locks" not in p.parts
    }


def enc(flag: bool) -> list[str]:
    return ["--encrypt"] if flag else []


@pytest.mark.parametrize(
    ("before", "after"),
    [(True, True), (False, True), (True, False)],
    ids=["encrypted-then-encrypted", "plain-then-encrypted", "encrypted-then-plain"],
)
def test_a_project_deleted_and_made_anew_is_written_with_its_own_key(
    site: dict, before: bool, after: bool
) -> None:
    """The server cached P's config and key (or its plainness); another process deletes P and
    makes it anew. The server sealed its backup with the old key (or wrote it in the clear
    into an encrypted project): a backup the server called completed that no CLI could read,
    an index file `check` called damaged, and a list of P that showed no backup."""
    root, data = site["root"], site["data"]
    ok(nb(root, "create", "P", str(data), *enc(before)))
    with served(site) as url, client(url) as c:
        assert len(c.get("/api/v1/backup/list/P").json()["items"]) == 1
        ok(nb(root, "delete-project", "P", "--yes"))
        ok(nb(root, "create", "P", str(data), *enc(after)))
        [new] = listed(root, "P")
        items = c.get("/api/v1/backup/list/P").json()["items"]
        assert [b["id"] for b in items] == [new["id"]]  # the new project's, not none
        meta = create_backup(c, "P", data)
        assert meta["status"] == "completed", meta
        [summary] = [p for p in c.get("/api/v1/projects").json() if p["project_id"] == "P"]
        assert summary["encrypted"] is after
    assert {b["id"] for b in listed(root, "P")} == {new["id"], meta["id"]}
    every_backup_restores(root, "P", data, site["tmp"])
    if after:  # nothing the server wrote into the encrypted project is in the clear
        for path in (root / "backups" / "P").rglob("*"):
            if path.is_file() and path.name != "config.json" and "keys" not in path.parts:
                assert b"hello, world" not in path.read_bytes()
                assert b'"status"' not in path.read_bytes(), path


def test_a_project_renamed_away_and_made_anew_gets_its_own_config_and_the_other_is_untouched(
    site: dict,
) -> None:
    """P (encrypted) renamed Q by another process: the server's next backup of P says it is
    gone (404, nothing written); the one after makes a new project P of its own (as a backup
    of an unknown project does), never one with the old P's key, config or index; then P
    deleted and made anew encrypted by the CLI: the server's backup goes into it, readable
    by its own key. Q keeps every byte and backs up too."""
    root, data = site["root"], site["data"]
    ok(nb(root, "create", "P", str(data), "--encrypt"))
    with served(site) as url, client(url) as c:
        assert c.get("/api/v1/backup/list/P").status_code == 200
        ok(nb(root, "rename-project", "P", "Q"))
        q_before = tree_bytes(root / "backups" / "Q")
        # the P it had open is gone: said once (404), nothing written, no P made again
        r = c.post("/api/v1/backup/create", json={"project_id": "P", "data_dir": str(data)})
        assert r.status_code == 404 and "renamed by another process" in r.text, r.text
        assert not (root / "backups" / "P").exists()
        # asked again, it is a backup of an unknown project: a new one is made
        first = create_backup(c, "P", data)
        assert first["status"] == "completed", first
        assert [b["id"] for b in listed(root, "P")] == [first["id"]]
        assert not json.loads((root / "backups" / "P" / "config.json").read_bytes()).get(
            "encryption"
        )  # the server makes plain projects: a new one, not the old P's config
        every_backup_restores(root, "P", data, site["tmp"])
        ok(nb(root, "delete-project", "P", "--yes"))
        ok(nb(root, "create", "P", str(data), "--encrypt"))
        meta = create_backup(c, "P", data)
        assert meta["status"] == "completed", meta
        assert tree_bytes(root / "backups" / "Q") == q_before
        assert create_backup(c, "Q", data)["status"] == "completed"
    every_backup_restores(root, "P", data, site["tmp"])
    every_backup_restores(root, "Q", data, site["tmp"])
    assert len(listed(root, "P")) == 2 and len(listed(root, "Q")) == 2


@pytest.mark.parametrize("change", ["newer", "garbage"])
def test_a_config_replaced_while_the_server_runs_stops_its_writes_with_one_error(
    site: dict, change: str
) -> None:
    """config.json replaced by one of a newer format (or by garbage) while the server has the
    project open: the server kept its cached config and wrote a backup into a repository this
    version cannot write. Now: one 409 naming why, nothing written; lists still answer."""
    root, data = site["root"], site["data"]
    ok(nb(root, "create", "P", str(data)))
    config = root / "backups" / "P" / "config.json"
    with served(site) as url, client(url) as c:
        [first] = c.get("/api/v1/backup/list/P").json()["items"]
        if change == "newer":
            doc = json.loads(config.read_bytes())
            doc["version"] = 99
            config.write_text(json.dumps(doc, indent=2))
        else:
            config.write_bytes(b"{ not json")
        before = tree_bytes(root / "backups" / "P")
        r = c.post("/api/v1/backup/create", json={"project_id": "P", "data_dir": str(data)})
        assert r.status_code in (400, 409), r.text  # NewerFormat is 400, Damaged 409
        assert ("newer" if change == "newer" else "config.json") in r.text
        r = c.delete(f"/api/v1/backup/P/{first['id']}")
        assert r.status_code in (400, 409), r.text
        assert tree_bytes(root / "backups" / "P") == before
        assert c.get("/api/v1/backup/list/P").status_code == 200


def test_keys_changed_by_another_process_leave_the_servers_writes_readable(site: dict) -> None:
    """key passwd of the very key the server unlocked with, then key add and the old key's
    removal: the master key is the same, so what the server writes opens with the new
    passwords; a fresh CLI checks and restores everything with them."""
    root, data = site["root"], site["data"]
    ok(nb(root, "create", "P", str(data), "--encrypt"))
    with served(site) as url, client(url) as c:
        assert c.get("/api/v1/backup/list/P").status_code == 200
        ok(nb(root, "key", "passwd", "P", new="second"))
        assert nb(root, "list", "P").returncode != 0  # the old password opens nothing now
        assert create_backup(c, "P", data)["status"] == "completed"
        ok(nb(root, "key", "add", "P", pw="second", new="third"))
        assert create_backup(c, "P", data)["status"] == "completed"
    every_backup_restores(root, "P", data, site["tmp"], pw="third")
    every_backup_restores(root, "P", data, site["tmp"], pw="second")


def test_index_rebuilt_backups_deleted_and_forgotten_by_another_process(site: dict) -> None:
    """rebuild-index replaces every index file the server loaded; a backup the server listed is
    deleted; forget removes others. The server's next backup dedups against what is really
    there, its restore and delete of the deleted backup answer 404, and everything checks."""
    root, data = site["root"], site["data"]
    ok(nb(root, "create", "P", str(data)))
    ok(nb(root, "create", "P", str(data)))
    with served(site) as url, client(url) as c:
        ids = [b["id"] for b in c.get("/api/v1/backup/list/P").json()["items"]]
        assert len(ids) == 2
        ok(nb(root, "rebuild-index", "P"))
        ok(nb(root, "delete", "P", ids[0]))
        meta = create_backup(c, "P", data)
        assert meta["status"] == "completed"
        items = [b["id"] for b in c.get("/api/v1/backup/list/P").json()["items"]]
        assert ids[0] not in items and meta["id"] in items
        r = c.post(
            "/api/v1/backup/restore",
            json={
                "project_id": "P",
                "backup_id": ids[0],
                "restore_dir": str(site["allowed"] / "x"),
            },
        )
        assert r.status_code == 404, r.text
        assert c.delete(f"/api/v1/backup/P/{ids[0]}").status_code == 404
        nb_forget = nb(root, "forget", "P", "--keep-last", "1", "--grace", "0")
        ok(nb_forget)
        assert create_backup(c, "P", data)["status"] == "completed"
    every_backup_restores(root, "P", data, site["tmp"])


def test_a_project_replaced_between_open_and_lock_is_not_written(site: dict) -> None:
    """The window the cache check cannot close: an operation opened P, then another process
    deleted it and made it anew before the lock was taken. Taking the lock says so (409)
    and nothing is written into the new project."""
    root, data = site["root"], site["data"]
    ok(nb(root, "create", "P", str(data), "--encrypt"))
    mgr = BackupManager(root, password=lambda _p: PW)
    repo = mgr._repo("P")
    ok(nb(root, "delete-project", "P", "--yes"))
    ok(nb(root, "create", "P", str(data), "--encrypt"))
    before = tree_bytes(root / "backups" / "P")
    with (
        pytest.raises(Conflict, match="replaced by another process"),
        locked(repo, "create", exclusive=False),
    ):
        pass
    assert tree_bytes(root / "backups" / "P") == before
    assert mgr._repo("P") is not repo  # the next operation opens the new project


def test_a_project_delete_confirmed_for_the_old_project_never_deletes_the_new_one(
    site: dict,
) -> None:
    """The client confirmed deleting P with the one backup it showed; meanwhile another process
    deleted P and made it anew with two backups: the count differs, 409, and the new P keeps
    every byte (it held before I18 too: the old key listed none of the new P's backups, a
    count of 0, which differs as well)."""
    root, data = site["root"], site["data"]
    ok(nb(root, "create", "P", str(data), "--encrypt"))
    with served(site) as url, client(url) as c:
        assert len(c.get("/api/v1/backup/list/P").json()["items"]) == 1
        ok(nb(root, "delete-project", "P", "--yes"))
        ok(nb(root, "create", "P", str(data), "--encrypt"))
        ok(nb(root, "create", "P", str(data)))
        before = tree_bytes(root / "backups" / "P")
        r = c.delete("/api/v1/projects/P", params={"backups": 1})
        assert r.status_code == 409, r.text
        assert tree_bytes(root / "backups" / "P") == before
    every_backup_restores(root, "P", data, site["tmp"])


def test_copy_to_set_by_another_process_and_its_target_made_anew_gets_readable_copies(
    site: dict,
) -> None:
    """`settings P copy-to X` run by the CLI while the server runs: the server's next backup
    is copied there; X's P then deleted and made anew encrypted by the CLI: the next copy is
    sealed with that project's own key. A fresh CLI checks X's P and restores every copy."""
    root, data, twin = site["root"], site["data"], site["tmp"] / "twin"
    twin.mkdir()
    ok(nb(root, "create", "P", str(data)))
    with served(site) as url, client(url) as c:
        assert c.get("/api/v1/backup/list/P").status_code == 200
        ok(nb(root, "settings", "P", "copy-to", str(twin)))
        first = create_backup(c, "P", data)
        wait_until(
            lambda: [b["id"] for b in listed(twin, "P")] == [first["id"]], what="the first copy"
        )
        ok(nb(twin, "delete-project", "P", "--yes"))
        ok(nb(twin, "create", "P", str(data), "--encrypt"))
        [own] = listed(twin, "P")
        second = create_backup(c, "P", data)
        wait_until(
            lambda: {b["id"] for b in listed(twin, "P")} == {own["id"], second["id"]},
            what="the second copy",
        )
    every_backup_restores(twin, "P", data, site["tmp"])
    every_backup_restores(root, "P", data, site["tmp"])
