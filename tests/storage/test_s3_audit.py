"""An audit of the S3 repository as an attacker and a careless user would try it: real CLI
processes on a real SeaweedFS, objects planted by hand in the bucket, credentials that may
only read. Each test checks what a user would: the bytes restored, the other project's
objects byte for byte, one error line instead of a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import obstore
import pytest
from storage.faultproxy import ERROR_503, PASS, RESET_AFTER, FaultProxy, read_only
from storage.seaweed import SeaweedServer
from storage.seaweed import cli as _cli

Run = Callable[..., subprocess.CompletedProcess]


def _bucket(seaweed: SeaweedServer, prefix: str) -> dict[str, str]:
    """Every key under `prefix` and the sha256 of its bytes, as the server holds them."""
    client = seaweed.client()
    return {
        meta["path"]: hashlib.sha256(bytes(obstore.get(client, meta["path"]).bytes())).hexdigest()
        for chunk in obstore.list(client, prefix)
        for meta in chunk
    }


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def _one_error_line(r: subprocess.CompletedProcess, *words: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, (r.args, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: error: "), (r.args, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _two_backups(nb: Run, data: Path, project: str) -> tuple[str, str]:
    """Two backups of `data` (the second with one more file): (oldest, newest)."""
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(300_000))
    (data / "h.txt").write_text("hello\n")
    _ok(nb("create", project, str(data)))
    (data / "b.bin").write_bytes(os.urandom(200_000))
    _ok(nb("create", project, str(data)))
    newest, oldest = (b["id"] for b in json.loads(nb("--json", "list", project).stdout))
    return oldest, newest


def test_folder_markers_planted_in_a_project_are_not_objects(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """An S3 console's "Create folder" (or `put-object --key index/`) writes a zero-byte
    object whose key ends with `/`, here for every directory of a project. No listing may
    show such a marker as an object of the directory's own name: `check` found the project
    DAMAGED ("index file index is damaged"), `delete` reclaimed nothing, and rebuild-index,
    the repair it pointed to, failed ("object 'index' not found"). Reclaim still frees the
    deleted backup's space, the backup left restores, the neighbour `web2` is untouched."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    oldest, newest = _two_backups(nb, tmp_path / "data", "web")
    (tmp_path / "data2").mkdir()
    (tmp_path / "data2" / "x").write_bytes(os.urandom(100_000))
    _ok(nb("create", "web2", str(tmp_path / "data2")))
    neighbour = _bucket(seaweed, f"{prefix}/backups/web2")
    project = f"{prefix}/backups/web"
    for folder in ("index", "packs", "packs/ab", "keys", "locks", "deleting", "clock"):
        assert seaweed.put_raw(f"{project}/{folder}/".encode()) == 200
    for backup in (oldest, newest):
        assert seaweed.put_raw(f"{project}/backup_{backup}/".encode()) == 200
        assert seaweed.put_raw(f"{project}/backup_{backup}/data/".encode()) == 200

    assert [b["id"] for b in json.loads(_ok(nb("--json", "list", "web")))] == [newest, oldest]
    _ok(nb("check", "web"))
    _ok(nb("verify", "web", "--all"))
    _ok(nb("delete", "web", oldest))
    _ok(nb("rebuild-index", "web"))
    _ok(nb("check", "web"))
    _ok(nb("restore", "web", newest, str(tmp_path / "out")))
    assert _tree(tmp_path / "out") == _tree(tmp_path / "data")
    assert _bucket(seaweed, f"{prefix}/backups/web2") == neighbour


def test_read_only_credentials_list_verify_and_restore_and_writers_say_one_line(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """A restore host given credentials (or a bucket policy) that allow only GET and HEAD:
    readers take no lock there, as on a read-only mount (I3), so `verify`, `check` and
    `restore` work instead of failing on their lock; every writer says one line; not one
    object changes."""
    prefix = f"t-{secrets.token_hex(6)}"
    url = seaweed.url(prefix)
    nb = _cli(seaweed, tmp_path, url)
    oldest, newest = _two_backups(nb, tmp_path / "data", "web")
    before = _bucket(seaweed, prefix)
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    with FaultProxy(upstream, read_only) as proxy:
        ro = {"AWS_ENDPOINT_URL": proxy.endpoint}
        assert len(json.loads(_ok(nb("--json", "list", "web", **ro)))) == 2
        _ok(nb("verify", "web", "--all", **ro))
        _ok(nb("check", "web", **ro))
        _ok(nb("ls", "web", newest, **ro))
        _ok(nb("restore", "web", newest, str(tmp_path / "out"), **ro))
        assert _tree(tmp_path / "out") == _tree(tmp_path / "data")
        (tmp_path / "data" / "c.txt").write_text("new\n")
        for args in (
            ["create", "web", str(tmp_path / "data")],
            ["delete", "web", oldest],
            ["rebuild-index", "web"],
            ["protect", "web", oldest],
            ["delete-project", "web", "--yes"],
        ):
            _one_error_line(nb(*args, **ro), "AccessDenied")
        assert proxy.injected["forbidden"] > 0
    assert _bucket(seaweed, prefix) == before


def test_a_copy_target_inside_or_holding_the_s3_repository_is_refused(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """As for a local repository (I7): a copy to `s3://B/REPO/backups` put a repository
    inside this one's `backups/`, where every listing showed a project named `backups`,
    damaged ("config.json is missing"); one inside a project mixed its objects with the
    project's. Refused with one line, by `copy --to` and `settings copy-to`, nothing
    written; a sibling prefix whose name merely starts the same is a repository of its own."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(f"{prefix}/repo"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a").write_bytes(os.urandom(50_000))
    _ok(nb("create", "web", str(tmp_path / "data")))
    before = _bucket(seaweed, prefix)
    for inside in ("repo/backups", "repo/backups/web", "repo/backups/web/packs", "repo/x", ""):
        target = seaweed.url(f"{prefix}/{inside}".rstrip("/"))
        for args in (
            ["copy", "web", "latest", "--to", target],
            ["settings", "web", "copy-to", target],
        ):
            _one_error_line(nb(*args), "this repository")
    assert _bucket(seaweed, prefix) == before
    assert [p["project_id"] for p in json.loads(_ok(nb("--json", "projects")))] == ["web"]
    _ok(nb("copy", "web", "latest", "--to", seaweed.url(f"{prefix}/repo2")))


class _Cut:
    """A chooser for the fault proxy: the `at`-th write or delete (PUT, POST, DELETE) gets
    `fault`, and every later one too when `persist` (a server that stays down for writes);
    `writes` counts them."""

    def __init__(self, at: int, fault: str, *, persist: bool = False) -> None:
        self.at, self.fault, self.persist, self.writes = at, fault, persist, 0
        self.lock = threading.Lock()

    def __call__(self, method: str, path: str) -> str:
        if method not in ("PUT", "POST", "DELETE"):
            return PASS
        with self.lock:
            self.writes += 1
            hit = self.writes == self.at or (self.persist and self.writes > self.at)
        return self.fault if hit else PASS


def _pack_bytes(seaweed: SeaweedServer, project: str) -> int:
    """The bytes of every pack of a project, as the server holds them."""
    found = obstore.list(seaweed.client(), f"{project}/packs")
    return sum(meta["size"] for chunk in found for meta in chunk)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "persist"),
    [(RESET_AFTER, False), (ERROR_503, True)],
    ids=["answer-lost", "server-down"],
)
def test_a_server_failing_at_any_write_of_a_delete_loses_nothing_and_a_rerun_finishes(
    seaweed: SeaweedServer, tmp_path: Path, fault: str, persist: bool
) -> None:
    """`delete` of the oldest backup with the server failing at its 1st, 2nd, ... write or
    delete request (the tombstone, each object, the lock, the reclaim's new pack and index,
    the old index files and packs): each run either succeeds or fails with one line; the
    same delete run again finishes it; every backup left restores its own files, byte for
    byte, `check` passes, and the deleted backup's own file no longer takes space."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    project = f"{prefix}/backups/web"
    data = tmp_path / "data"
    data.mkdir()
    (data / "common").write_bytes(os.urandom(200_000))
    files: dict[str, dict[str, bytes]] = {}

    def backup(n: int) -> str:
        for old in data.glob("u*"):
            old.unlink()
        (data / f"u{n}").write_bytes(os.urandom(150_000 + n))
        newest = json.loads(_ok(nb("--json", "create", "web", str(data))))["id"]
        files[newest] = _tree(data)
        return newest

    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    queue = [backup(0)]
    at = 1
    while True:
        queue.append(backup(at))
        oldest = queue.pop(0)
        before = _pack_bytes(seaweed, project)
        cut = _Cut(at, fault, persist=persist)
        with FaultProxy(upstream, cut) as proxy:
            r = nb("delete", "web", oldest, AWS_ENDPOINT_URL=proxy.endpoint)
        hit = proxy.injected[fault] > 0
        if r.returncode != 0:
            assert hit, r.stderr
            _one_error_line(r)
            again = nb("delete", "web", oldest)
            assert again.returncode == 0 or "not found" in again.stderr, again.stderr
            if again.returncode != 0:  # the backup went before the cut: its space, by a writer
                _ok(nb("delete", "web", queue[0]))
                queue.pop(0)
                queue.append(backup(at + 1000))
        _ok(nb("check", "web"))
        for kept in queue:
            out = tmp_path / f"out-{at}-{kept}"
            _ok(nb("restore", "web", kept, str(out)))
            assert _tree(out) == files[kept], (at, kept)
        assert [b["id"] for b in json.loads(_ok(nb("--json", "list", "web")))] == queue[::-1]
        assert _pack_bytes(seaweed, project) < before - 100_000, (at, r.stderr)  # reclaimed
        if not hit:
            break
        at += 1
    assert at > 5  # the delete and its reclaim made several writes, each one cut once


@pytest.mark.slow
def test_reclaim_over_more_than_a_listing_page_of_packs_deletes_only_the_unneeded(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """A project of some 1,800 packs (its config's pack_size set to 1 after the first backup,
    so each chunk is a pack of its own) among 1,100 objects planted under `packs/` that are no
    packs (a user's copies): every listing spans several pages of 1,000 keys. Deleting the
    backup whose 600 chunks no other backup needs deletes exactly those 600 packs; every
    backup left restores byte for byte; the stray objects and the neighbour project `web2`,
    whose name starts the same, stay byte for byte."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    client = seaweed.client()
    project = f"{prefix}/backups/web"
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "x").write_bytes(os.urandom(50_000))
    _ok(nb("create", "web2", str(tmp_path / "n")))
    data = tmp_path / "data"
    data.mkdir()
    (data / "seed").write_text("seed\n")
    _ok(nb("create", "web", str(data)))
    first = _tree(data)
    config = json.loads(bytes(obstore.get(client, f"{project}/config.json").bytes()))
    obstore.put(client, f"{project}/config.json", json.dumps({**config, "pack_size": 1}).encode())
    for i in range(1200):
        (data / f"f{i:04d}").write_bytes(os.urandom(2000))
    _ok(nb("create", "web", str(data)))
    for i in range(0, 1200, 2):
        (data / f"f{i:04d}").write_bytes(os.urandom(2000))
    _ok(nb("create", "web", str(data)))
    newest, middle, oldest = (b["id"] for b in json.loads(_ok(nb("--json", "list", "web"))))
    for i in range(1100):
        obstore.put(client, f"{project}/packs/{i % 256:02x}/copy-{i}", b"not a pack")
    strays = {k: v for k, v in _bucket(seaweed, f"{project}/packs").items() if "/copy-" in k}
    neighbour = _bucket(seaweed, f"{prefix}/backups/web2")
    packs = {k for k in _bucket(seaweed, f"{project}/packs") if "/copy-" not in k}
    assert len(packs) > 1800

    assert "600 packs deleted" in _ok(nb("delete", "web", middle))
    after = _bucket(seaweed, f"{project}/packs")
    assert len(packs - set(after)) == 600 and set(after) - packs == set(strays)
    assert {k: after[k] for k in strays} == strays
    assert _bucket(seaweed, f"{prefix}/backups/web2") == neighbour
    _ok(nb("check", "web"))
    _ok(nb("restore", "web", newest, str(tmp_path / "new")))
    assert _tree(tmp_path / "new") == _tree(data)
    _ok(nb("restore", "web", oldest, str(tmp_path / "old")))
    assert _tree(tmp_path / "old") == first


def test_a_key_no_listing_can_read_in_one_project_stops_only_that_project(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """A key with a newline in it (another tool's upload, or planted) under project `web`:
    obstore cannot parse it, so no listing of that prefix can be made. It made `run-due` fail
    before backing up any project (the projects' listing asked whether `web` holds an
    object, and that page failed), so the due project `web2` was never backed up. Now `web2`
    is backed up on schedule; `web` is still listed, and what needs that listing fails with
    one line naming the key (check; delete removes the backup but reclaims nothing), no pack
    deleted; once the key is removed by another tool, `web` checks clean and restores."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    oldest, newest = _two_backups(nb, tmp_path / "data", "web")
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "x").write_bytes(os.urandom(50_000))
    _ok(nb("create", "web2", str(tmp_path / "n"), "--time", "2020-01-01T00:00:00Z"))
    _ok(nb("policy", "set", "web2", "--schedule", "hourly"))
    odd = f"{prefix}/backups/web/packs/ab/notes\nfrom another tool".encode()
    assert seaweed.put_raw(odd, b"not a pack") == 200
    project = _bucket_unreadable_safe(seaweed, prefix, odd)

    _ok(nb("run-due"))
    assert len(json.loads(_ok(nb("--json", "list", "web2")))) == 2
    assert len(json.loads(_ok(nb("--json", "list", "web")))) == 2
    _one_error_line(nb("check", "web"), "cannot be read", "notes")
    assert _bucket_unreadable_safe(seaweed, prefix, odd) == project
    # the backup asked for goes; its space is not reclaimed while packs/ cannot be listed
    _one_error_line(nb("delete", "web", oldest), "space not reclaimed", "cannot be read")
    assert [b["id"] for b in json.loads(_ok(nb("--json", "list", "web")))] == [newest]
    gone = f"{prefix}/backups/web/backup_{oldest}/"
    assert _bucket_unreadable_safe(seaweed, prefix, odd) == {
        k: v for k, v in project.items() if not k.startswith(gone)
    }
    assert seaweed.put_raw(odd, method="DELETE") == 204
    _ok(nb("check", "web"))
    _ok(nb("restore", "web", newest, str(tmp_path / "out")))
    assert _tree(tmp_path / "out") == _tree(tmp_path / "data")


def _bucket_unreadable_safe(seaweed: SeaweedServer, prefix: str, odd: bytes) -> dict[str, str]:
    """`_bucket` of project `web` but for the directory holding `odd` (no listing of it
    can be made): every other directory of the project, key by key."""
    client = seaweed.client()
    top = f"{prefix}/backups/web"
    listing = obstore.list_with_delimiter(client, top)
    found = {meta["path"]: meta["e_tag"] for meta in listing["objects"]}
    for sub in listing["common_prefixes"]:
        if not odd.decode().startswith(sub + "/"):
            found.update(_bucket(seaweed, sub))
    return found


def test_a_new_project_name_every_listing_would_hide_is_refused(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """`.tmp-` marks an object on its way in, and every store's listing hides it: a project
    `site.tmp-2` was made (its backup stored) and then shown nowhere (`projects`: none) and
    never backed up by `run-due`. A new project, or a rename's new name, holding it is
    refused with one line, before anything is written."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a").write_text("a\n")
    _one_error_line(nb("create", "site.tmp-2", str(tmp_path / "data")), ".tmp-")
    assert _bucket(seaweed, prefix) == {}
    _ok(nb("create", "site.tmp2", str(tmp_path / "data")))
    assert "site.tmp2" in _ok(nb("projects"))

    local = [sys.executable, "-m", "cli", "--root", str(tmp_path / "local")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXUS_", "AWS_"))}

    def lb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*local, *args], capture_output=True, text=True, env=env, timeout=60)

    _ok(lb("create", "web", str(tmp_path / "data")))
    _one_error_line(lb("rename-project", "web", "web.tmp-1"), ".tmp-")
    _one_error_line(lb("create", "x.tmp-y", str(tmp_path / "data")), ".tmp-")
    assert "web" in _ok(lb("projects"))
    assert sorted(p.name for p in (tmp_path / "local" / "backups").iterdir()) == ["web"]


@pytest.mark.slow
def test_a_server_failing_at_any_write_of_a_rebuild_index_loses_nothing(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """A pack whose header was damaged (one byte flipped) and `rebuild-index` through a
    server whose answer to its 1st, 2nd, ... write or delete is lost after the server carried
    it out (the quarantine copy, the salvaged pack, the new index, the old ones removed): each
    run finishes or fails with one line, the next rebuild-index repairs the project, `check`
    passes and both backups restore byte for byte. (The salvage rebuilds such a pack under its
    own name, so the damage is made again before each cut run.)"""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    oldest, newest = _two_backups(nb, tmp_path / "data", "web")
    wanted = {newest: _tree(tmp_path / "data")}
    (tmp_path / "data" / "b.bin").unlink()
    wanted[oldest] = _tree(tmp_path / "data")
    client = seaweed.client()
    project = f"{prefix}/backups/web"
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    at = 1
    while True:
        packs = sorted(m["path"] for c in obstore.list(client, f"{project}/packs") for m in c)
        victim = packs[at % len(packs)]
        damaged = bytearray(bytes(obstore.get(client, victim).bytes()))
        damaged[-29] ^= 0xFF  # the last byte of the header, just before the trailer
        obstore.put(client, victim, bytes(damaged))
        cut = _Cut(at, RESET_AFTER)
        with FaultProxy(upstream, cut) as proxy:
            r = nb("rebuild-index", "web", AWS_ENDPOINT_URL=proxy.endpoint)
        hit = proxy.injected[RESET_AFTER] > 0
        assert r.returncode in (0, 1, 4) and "Traceback" not in r.stderr, (at, r.stderr)
        if r.returncode == 1:
            _one_error_line(r)
        again = nb("rebuild-index", "web")
        assert again.returncode in (0, 4) and not again.stderr, (at, again.stderr)
        _ok(nb("check", "web"))
        for backup, files in wanted.items():
            out = tmp_path / f"out-{at}-{backup}"
            _ok(nb("restore", "web", backup, str(out)))
            assert _tree(out) == files, (at, backup)
        if not hit:
            break
        at += 1
    assert at > 3


def test_a_project_holding_folder_markers_is_deleted_whole_and_its_name_is_free_again(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """Folder objects (`index/`, `backup_{id}/`, as an S3 console or an s3fs mount writes
    them) hold no data. `delete-project` left them as "files nexus-backup did not write", so
    the project stayed in `projects` (0 backups) and `create` of its name was refused for
    ever ("config.json is missing"). They go with the project; a stranger's real file stays
    and is reported; the neighbour `web2` stays byte for byte."""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    oldest, newest = _two_backups(nb, tmp_path / "data", "web")
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "x").write_bytes(os.urandom(50_000))
    _ok(nb("create", "web2", str(tmp_path / "n")))
    neighbour = _bucket(seaweed, f"{prefix}/backups/web2")
    project = f"{prefix}/backups/web"
    for folder in ("index", "packs", "keys", "locks", f"backup_{oldest}", f"backup_{newest}"):
        assert seaweed.put_raw(f"{project}/{folder}/".encode()) == 200
    _ok(nb("delete-project", "web", "--yes"))
    assert "web\n" not in _ok(nb("projects")).replace(" ", "\n")
    assert _bucket(seaweed, project) == {}
    _ok(nb("create", "web", str(tmp_path / "data")))

    client = seaweed.client()
    obstore.put(client, f"{project}/notes.txt", b"an operator's notes")
    assert "notes.txt" in _ok(nb("delete-project", "web", "--yes"))
    assert _bucket(seaweed, project) == {
        f"{project}/notes.txt": hashlib.sha256(b"an operator's notes").hexdigest()
    }
    assert _bucket(seaweed, f"{prefix}/backups/web2") == neighbour


@pytest.mark.slow
def test_a_copy_to_s3_whose_server_loses_any_answer_is_finished_by_the_next_copy(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """`copy` of a local project's newest backup to S3, the answer to its 1st, 2nd, ... write
    or delete lost after the server carried it out (the metadata RUNNING, each pack, its
    index, the manifest, the metadata, verify.json, the locks): each run finishes or fails in
    one line; the next copy finishes it; the target lists exactly the backups copied, checks
    clean and restores the first and the newest byte for byte."""
    target = seaweed.url(f"t-{secrets.token_hex(6)}")
    local = [sys.executable, "-m", "cli", "--root", str(tmp_path / "local")]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NEXUS_", "AWS_"))},
        **seaweed.env(),
        "NEXUS_BACKUP_CACHE_DIR": str(tmp_path / "cache"),
    }

    def lb(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*local, *args], capture_output=True, text=True, env={**env, **extra}, timeout=120
        )

    nb = _cli(seaweed, tmp_path, target)
    data = tmp_path / "data"
    data.mkdir()
    (data / "common").write_bytes(os.urandom(100_000))
    copied: dict[str, dict[str, bytes]] = {}
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    at = 1
    while True:
        (data / f"u{at}").write_bytes(os.urandom(120_000))
        newest = json.loads(_ok(lb("--json", "create", "web", str(data))))["id"]
        with FaultProxy(upstream, _Cut(at, RESET_AFTER)) as proxy:
            r = lb("copy", "web", newest, "--to", target, AWS_ENDPOINT_URL=proxy.endpoint)
        hit = proxy.injected[RESET_AFTER] > 0
        if r.returncode != 0:
            _one_error_line(r)
        _ok(lb("copy", "web", newest, "--to", target))
        copied[newest] = _tree(data)
        listed = [b["id"] for b in json.loads(_ok(nb("--json", "list", "web")))]
        assert sorted(listed) == sorted(copied), (at, r.stderr)
        _ok(nb("check", "web"))
        for backup in {next(iter(copied)), newest}:  # the first one copied, and this one
            out = tmp_path / f"out-{at}-{backup}"
            _ok(nb("restore", "web", backup, str(out)))
            assert _tree(out) == copied[backup], (at, backup)
        if not hit:
            break
        at += 1
    assert at > 5


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["index", "newest-manifest", "oldest-metadata", "lock", "policy"])
def test_an_empty_object_in_place_of_each_kind_is_said_and_loses_nothing(
    seaweed: SeaweedServer, tmp_path: Path, kind: str
) -> None:
    """A zero-length object (a truncated upload, a sync tool's placeholder) in place of an
    index file, the newest backup's manifest, the oldest's metadata, a lock of another host,
    the policy: every reader and writer (list, verify, check, restore, delete, create,
    rebuild-index) answers with an exit code and at most one line each of warning and error,
    never a traceback; none deletes what the newest backup needs: once the object is put
    back, the newest backup restores byte for byte. (Passes: no defect found.)"""
    prefix = f"t-{secrets.token_hex(6)}"
    nb = _cli(seaweed, tmp_path, seaweed.url(prefix))
    oldest, newest = _two_backups(nb, tmp_path / "data", "web")
    wanted = _tree(tmp_path / "data")
    _ok(nb("policy", "set", "web", "--keep-last", "5"))
    client = seaweed.client()
    project = f"{prefix}/backups/web"
    index = next(k for k in _bucket(seaweed, f"{project}/index"))
    name = {
        "index": index,
        "newest-manifest": f"{project}/backup_{newest}/data/manifest.zst",
        "oldest-metadata": f"{project}/backup_{oldest}/metadata.json",
        "lock": f"{project}/locks/otherhost-1-0badf00d.json",
        "policy": f"{project}/policy.json",
    }[kind]
    keys = _bucket(seaweed, project)
    saved = bytes(obstore.get(client, name).bytes()) if name in keys else None
    obstore.put(client, name, b"")
    for args in (
        ["list", "web"],
        ["verify", "web", "--all"],
        ["check", "web"],
        ["restore", "web", newest, str(tmp_path / "during")],
        ["delete", "web", oldest],
        ["create", "web", str(tmp_path / "data")],
        ["rebuild-index", "web"],
    ):
        r = nb(*args)
        lines = r.stderr.strip().splitlines()
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (args, r.stderr)
        assert len([ln for ln in lines if ": error: " in ln]) <= 1, (args, r.stderr)
        assert all(ln.startswith("nexus-backup: ") for ln in lines), (args, r.stderr)
    if saved is None:
        obstore.delete(client, name)
    else:
        obstore.put(client, name, saved)
    _ok(nb("restore", "web", newest, str(tmp_path / "out")))
    assert _tree(tmp_path / "out") == wanted
