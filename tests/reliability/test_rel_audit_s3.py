"""An audit of the S3 repository (core/storage/s3.py, invariants I11 and I16) as an attacker
and a careless user would try it, on the real SeaweedFS server: two repositories in one
bucket whose prefixes are prefixes of one another (`.../proj` and `.../proj2`), keys of odd
shapes planted in the bucket (`..`, `//`, a trailing `/`), a garbage or truncated pack,
index file or manifest, a config of a future version. Real CLI processes; each test checks
the other repository's objects byte for byte, the exit code and the one error line."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from pathlib import Path

import obstore
import pytest
from storage.seaweed import SeaweedServer
from storage.seaweed import cli as _cli


def bucket(seaweed: SeaweedServer, prefix: str) -> dict[str, str]:
    """Every key under `prefix` (as the server lists it) and the sha256 of its bytes."""
    client = seaweed.client()

    def digest(key: str) -> str:
        try:
            return hashlib.sha256(bytes(obstore.get(client, key).bytes())).hexdigest()
        except FileNotFoundError:  # a folder marker: listed, not read back by its name
            return "<folder>"

    return {
        meta["path"]: digest(meta["path"])
        for chunk in obstore.list(client, prefix)
        for meta in chunk
    }


def below(keys: dict[str, str], prefix: str) -> dict[str, str]:
    return {k: v for k, v in keys.items() if k.startswith(prefix + "/")}


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args[5:], r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def one_error_line(r: subprocess.CompletedProcess, *words: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, (r.args[5:], r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (r.args, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert all(ln.startswith("nexus-backup: ") for ln in lines), (r.args, r.stderr)


def two_backups(nb, data: Path, project: str) -> tuple[str, str]:
    data.mkdir(parents=True, exist_ok=True)
    (data / "a.bin").write_bytes(os.urandom(300_000))
    (data / "h.txt").write_text("hello\n")
    ok(nb("create", project, str(data)))
    (data / "b.bin").write_bytes(os.urandom(200_000))
    ok(nb("create", project, str(data)))
    newest, oldest = (b["id"] for b in json.loads(nb("--json", "list", project).stdout))
    return oldest, newest


@pytest.mark.parametrize("names", [("proj", "proj2"), ("proj2", "proj"), ("p", "p/q")])
def test_two_repositories_whose_prefixes_start_alike_never_touch_each_other(
    seaweed: SeaweedServer, tmp_path: Path, names: tuple[str, str]
):
    """`s3://b/X/proj` and `s3://b/X/proj2` (and a repository nested in another's prefix),
    each with a project of the same name: every command of the first (projects, delete with
    reclaim, forget, rebuild-index, check, delete-project) lists, judges and deletes only
    its own objects. The second's objects stay byte for byte and it still restores; the
    first never lists the second's projects."""
    top = f"t-{secrets.token_hex(6)}"
    mine, theirs = f"{top}/{names[0]}", f"{top}/{names[1]}"
    nb_theirs = _cli(seaweed, tmp_path / "theirs", seaweed.url(theirs))
    t_old, t_new = two_backups(nb_theirs, tmp_path / "tdata", "web")
    ok(nb_theirs("create", "other", str(tmp_path / "tdata")))
    kept = below(bucket(seaweed, theirs), theirs)
    nb = _cli(seaweed, tmp_path / "mine", seaweed.url(mine))
    projects = json.loads(ok(nb("--json", "projects")))
    assert projects == [], projects  # an empty repository: nothing of theirs shows
    oldest, _newest = two_backups(nb, tmp_path / "data", "web")
    projects = json.loads(ok(nb("--json", "projects")))
    assert [p["project_id"] for p in projects] == ["web"], projects
    ok(nb("delete", "web", oldest))
    ok(nb("create", "web", str(tmp_path / "data")))
    ok(nb("forget", "web", "--keep-last", "1", "--grace", "0"))
    ok(nb("rebuild-index", "web"))
    ok(nb("check", "web"))
    ok(nb("delete-project", "web", "--yes"))
    assert json.loads(ok(nb("--json", "projects"))) == []
    now = below(bucket(seaweed, theirs), theirs)
    assert now == kept
    ok(nb_theirs("check", "web"))
    ok(nb_theirs("restore", "web", t_new, str(tmp_path / "out")))
    assert tree(tmp_path / "out") == tree(tmp_path / "tdata")
    assert {p["project_id"] for p in json.loads(ok(nb_theirs("--json", "projects")))} == {
        "web",
        "other",
    }
    assert t_old in {b["id"] for b in json.loads(ok(nb_theirs("--json", "list", "web")))}


# --- keys of odd shapes ---------------------------------------------------------------


def test_keys_with_dot_segments_or_double_slashes_never_reach_another_object(
    seaweed: SeaweedServer,
):
    """What the server does with the odd keys a hostile writer would plant: a `..` or `.`
    segment is refused (400), `//` is folded into `/` (so `a//packs/x` is `a/packs/x`, an
    object of that directory like any other): no key can name an object outside the prefix
    it was listed under, or two names one object. (Passes: pins what the other tests of odd
    names rely on.)"""
    p = f"t-{secrets.token_hex(6)}"
    assert seaweed.put_raw(f"{p}/a/index/../evil".encode(), b"x") == 400
    assert seaweed.put_raw(f"{p}/a/./evil".encode(), b"x") == 400
    assert seaweed.put_raw(f"{p}/a//packs/x".encode(), b"x") == 200
    assert set(bucket(seaweed, p)) == {f"{p}/a/packs/x"}


@pytest.mark.parametrize(
    "marker",
    ["policy.json/", "project.json/", "last_run.json/", "verify.json/", "metadata.json/"],
)
def test_a_folder_marker_at_an_objects_own_name_is_said_and_loses_nothing(
    seaweed: SeaweedServer, tmp_path: Path, marker: str
):
    """A zero-byte `name/` key (an S3 console's folder, a sync tool's) where a settings
    object, a backup's verify record or (the oldest backup, its metadata deleted first) its
    metadata would be: every command answers with an exit code and at most one error line,
    never a traceback; the neighbour `web2` is untouched and the newest backup restores."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    oldest, newest = two_backups(nb, tmp_path / "data", "web")
    wanted = tree(tmp_path / "data")
    (tmp_path / "data2").mkdir()
    (tmp_path / "data2" / "x").write_bytes(os.urandom(50_000))
    ok(nb("create", "web2", str(tmp_path / "data2")))
    neighbour = below(bucket(seaweed, f"{prefix}/backups/web2"), f"{prefix}/backups/web2")
    project = f"{prefix}/backups/web"
    client = seaweed.client()
    if marker in ("verify.json/", "metadata.json/"):
        name = f"{project}/backup_{oldest}/{marker}"
        obstore.delete(client, name.rstrip("/"))
    else:
        name = f"{project}/{marker}"
        with_suppress = name.rstrip("/")
        if with_suppress in bucket(seaweed, project):
            obstore.delete(client, with_suppress)
    assert seaweed.put_raw(name.encode()) == 200
    for args in (
        ["projects"],
        ["list", "web"],
        ["info", "web"],
        ["policy", "show", "web"],
        ["check", "web"],
        ["verify", "web", "--all"],
        ["create", "web", str(tmp_path / "data")],
        ["delete", "web", oldest],
        ["rebuild-index", "web"],
        ["schedule", "status"],
    ):
        r = nb(*args)
        no_traceback(r)
        assert len([ln for ln in r.stderr.splitlines() if ": error: " in ln]) <= 1, r.stderr
    ok(nb("restore", "web", newest, str(tmp_path / "out")))
    assert tree(tmp_path / "out") == wanted
    assert below(bucket(seaweed, f"{prefix}/backups/web2"), f"{prefix}/backups/web2") == neighbour


def test_a_project_that_is_only_a_folder_marker_is_no_project_and_stops_nothing(
    seaweed: SeaweedServer, tmp_path: Path
):
    """`backups/ghost/config.json/` planted beside a real project: the real one is listed
    and backed up by run-due, the ghost is refused with one line, and creating a project
    of that name says what is wrong instead of writing beside the marker."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    two_backups(nb, tmp_path / "data", "web")
    assert seaweed.put_raw(f"{prefix}/backups/ghost/config.json/".encode()) == 200
    r = nb("--json", "projects")
    no_traceback(r)
    assert "web" in {p["project_id"] for p in json.loads(r.stdout or "[]")}, r.stderr
    for args in (
        ["list", "ghost"],
        ["check", "ghost"],
        ["create", "ghost", str(tmp_path / "data")],
    ):
        r = nb(*args)
        no_traceback(r)
        assert len([ln for ln in r.stderr.splitlines() if ": error: " in ln]) <= 1, r.stderr
    ok(nb("create", "web", str(tmp_path / "data")))


# --- damaged objects and a newer format ------------------------------------------------


@pytest.mark.parametrize("kind", ["pack", "index", "manifest"])
@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_truncated_or_garbage_object_on_s3_is_damage_never_deleted(
    seaweed: SeaweedServer, tmp_path: Path, kind: str, how: str
):
    """A pack, index file or the newest backup's manifest cut to half its length or
    replaced by random bytes of its size: `check` says DAMAGED (exit 4, no traceback);
    deleting the other backup reclaims nothing on that account (the object stays, byte for
    byte); put back, everything restores."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    oldest, newest = two_backups(nb, tmp_path / "data", "web")
    wanted = tree(tmp_path / "data")
    project = f"{prefix}/backups/web"
    keys = bucket(seaweed, project)
    name = {
        "pack": max((k for k in keys if "/packs/" in k), key=lambda k: k),
        "index": next(k for k in keys if "/index/" in k),
        "manifest": f"{project}/backup_{newest}/data/manifest.zst",
    }[kind]
    client = seaweed.client()
    saved = bytes(obstore.get(client, name).bytes())
    bad = saved[: len(saved) // 2] if how == "truncated" else os.urandom(len(saved))
    obstore.put(client, name, bad)
    r = nb("check", "web")
    no_traceback(r)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    r = nb("delete", "web", oldest)
    no_traceback(r)
    assert bytes(obstore.get(client, name).bytes()) == bad
    obstore.put(client, name, saved)
    ok(nb("restore", "web", newest, str(tmp_path / "out")))
    assert tree(tmp_path / "out") == wanted


def test_a_config_of_a_future_version_on_s3_is_refused_by_writers_and_nothing_is_written(
    seaweed: SeaweedServer, tmp_path: Path
):
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    oldest, newest = two_backups(nb, tmp_path / "data", "web")
    client = seaweed.client()
    name = f"{prefix}/backups/web/config.json"
    config = json.loads(bytes(obstore.get(client, name).bytes()))
    config["version"] = 99
    obstore.put(client, name, json.dumps(config, indent=2).encode())
    before = bucket(seaweed, prefix)
    for args in (
        ["create", "web", str(tmp_path / "data")],
        ["delete", "web", oldest],
        ["forget", "web", "--keep-last", "1", "--grace", "0"],
        ["rebuild-index", "web"],
        ["policy", "set", "web", "--keep-last", "3"],
        ["settings", "web", "copy-to", str(tmp_path / "twin")],
        ["restore", "web", newest, str(tmp_path / "out")],
        ["verify", "web", "--all"],
        ["delete-project", "web", "--yes"],
        ["rename-project", "web", "web3"],
    ):
        r = nb(*args)
        one_error_line(r)
        assert bucket(seaweed, prefix) == before, args
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    ok(nb("list", "web"))
    ok(nb("projects"))


def test_odd_keys_under_an_encrypted_projects_keys_prefix_on_s3_never_count_as_keys(
    seaweed: SeaweedServer, tmp_path: Path
):
    """An encrypted project on S3 with, under keys/, a folder marker, a marker named as a
    key id, an object one level deeper and a garbage key: it opens with its password, the
    wrong one is still exit 12, `key list` answers, and the one real key is never removed
    as though another were left."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x\n")
    pw = {"NEXUS_BACKUP_PASSWORD": "pw"}
    ok(nb("create", "web", str(data), "--encrypt", **pw))
    keys = f"{prefix}/backups/web/keys"
    (good,) = [k.rsplit("/", 1)[1] for k in bucket(seaweed, keys)]
    assert seaweed.put_raw(f"{keys}/".encode()) == 200
    assert seaweed.put_raw(f"{keys}/{'e' * 32}/".encode()) == 200
    assert seaweed.put_raw(f"{keys}/sub/{good}".encode(), b"{}") == 200
    assert seaweed.put_raw(f"{keys}/{'f' * 32}".encode(), os.urandom(200)) == 200
    before = bucket(seaweed, prefix)
    ok(nb("list", "web", **pw))
    one_error_line(nb("list", "web", NEXUS_BACKUP_PASSWORD="wrong"), "wrong password")
    listed = json.loads(ok(nb("--json", "key", "list", "web", **pw)))
    assert good in {k["id"] for k in listed}
    one_error_line(nb("key", "remove", "web", good, **pw), good)
    after = bucket(seaweed, prefix)
    assert {k: v for k, v in after.items() if "/locks/" not in k} == {
        k: v for k, v in before.items() if "/locks/" not in k
    }
    ok(nb("create", "web", str(data), **pw))
