"""Encryption at rest (issue 12): an encrypted project reveals nothing of what it holds to
whoever reads its store, opens only with one of its passwords, reports tampering as damage,
copies to and from plain repositories, and survives a kill in the middle of a password
change. Real files, real stores (a local disk, a real S3 server), real processes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
from store_helpers import fast_kdf, flip_byte, open_repository, project_store

from core.errors import Damaged, WrongPassword
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.repo import crypto
from core.repo import manifest as mf
from core.repo import repository as repository_module
from core.repo.repository import NewerFormat, Repository
from core.storage.local import LocalStore

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
NAME = "grep-me-secret-file-name"
CONTENT = b"GREP-ME-SECRET-CONTENT "
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _cheap_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_kdf(monkeypatch)


def pseudo_random(seed: bytes, n: int) -> bytes:
    return blake3.blake3(seed).digest(length=n)


def tree(d: Path) -> dict[str, bytes]:
    """A small file, a compressible one, one of several chunks (incompressible, with the
    marker inside), in a directory whose name is a marker too."""
    (d / f"{NAME}-dir").mkdir(parents=True)
    files = {
        f"{NAME}.txt": CONTENT + b"small",
        f"{NAME}-dir/log.txt": CONTENT * 4000,
        "big.bin": pseudo_random(b"a", 3 * MiB) + CONTENT + pseudo_random(b"b", 2 * MiB),
    }
    for rel, data in files.items():
        (d / rel).write_bytes(data)
    return files


def encrypted(root: Path, **kw) -> BackupManager:
    return BackupManager(root, password=lambda _p: PASSWORD, encrypt=True, **kw)


def read_tree(top: Path) -> dict[str, bytes]:
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*") if p.is_file()}


def every_object(manager: BackupManager, project: str) -> dict[str, bytes]:
    store = project_store(manager, project)
    return {o.name: store.get(o.name) for o in store.list("")}


def needles_of(manager: BackupManager, project: str, data: Path, files: dict[str, bytes]):
    """What must never appear: names, contents, the data directory, and the unkeyed BLAKE3
    (hex and raw) of every file and of every chunk the backups really cut."""
    needles = [NAME.encode(), CONTENT, str(data).encode(), b"nexus_manifest", b"NXIDX001"]
    for content in files.values():
        needles += [blake3.blake3(content).hexdigest().encode(), blake3.blake3(content).digest()]
    repo = open_repository(manager, project)
    for backup_id in repo.backup_ids():
        for e in mf.iter_entries(repo.read_manifest(backup_id)):
            if e.kind != mf.FILE or len(e.chunks) < 2:
                continue
            content, at = files[e.path.decode()], 0
            for _h, n in e.chunks:
                piece = content[at : at + n]
                needles += [
                    blake3.blake3(piece).digest(),
                    blake3.blake3(piece).hexdigest().encode(),
                ]
                at += n
    return needles


def leaks(objects: dict[str, bytes], needles: list[bytes]) -> list[str]:
    return sorted(
        f"{name}: {needle[:24]!r}" for name, raw in objects.items() for needle in needles
        if needle in raw or needle in name.encode()
    )  # fmt: skip


async def grep_run(manager: BackupManager, tmp_path: Path) -> None:
    data = tmp_path / "data"
    files = tree(data)
    first = await manager.create(CreateRequest(project_id="p", data_dir=str(data)))
    (data / f"{NAME}-dir" / "new.txt").write_bytes(CONTENT + b"new")
    files[f"{NAME}-dir/new.txt"] = CONTENT + b"new"
    await manager.create(
        CreateRequest(project_id="p", data_dir=str(data), parent_backup_id=first.id)
    )
    assert (await manager.check("p", read_data=True)).ok
    needles = needles_of(manager, "p", data, files)
    assert len(needles) > 20  # the chunks of big.bin are among them
    assert leaks(every_object(manager, "p"), needles) == []
    # the search is real: the same run on a plain project finds them all
    plain = BackupManager(tmp_path / "plain")
    await plain.create(CreateRequest(project_id="p", data_dir=str(data)))
    found = leaks(every_object(plain, "p"), needles_of(plain, "p", data, files))
    assert any("CONTENT" in f for f in found) and any("index/" in f for f in found), found


async def test_an_encrypted_project_on_disk_shows_no_name_content_or_hash(tmp_path):
    await grep_run(encrypted(tmp_path / "root"), tmp_path)


async def test_an_encrypted_project_on_s3_shows_no_name_content_or_hash(tmp_path, s3_url):
    await grep_run(encrypted(tmp_path / "root", repository=s3_url), tmp_path)


async def test_round_trip_delete_reclaim_and_keyed_ids(tmp_path):
    data = tmp_path / "data"
    files = tree(data)
    mgr = encrypted(tmp_path / "root")
    one = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    (data / "big.bin").write_bytes(files["big.bin"][:MiB] + b"changed" + files["big.bin"][MiB:])
    two = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    assert two.stats.chunks_reused > 0  # dedup holds under keyed ids and the keyed chunker
    await mgr.delete("p", one.id)
    assert (await mgr.check("p", read_data=True)).ok
    out = tmp_path / "out"
    fresh = BackupManager(tmp_path / "root", password=lambda _p: PASSWORD)  # a new process
    result = await fresh.restore(
        RestoreRequest(project_id="p", backup_id=two.id, restore_dir=str(out))
    )
    assert result.verified and read_tree(out) == read_tree(data)
    # two encrypted projects name the same chunks apart (their ids are keyed)
    other = encrypted(tmp_path / "root2")
    await other.create(CreateRequest(project_id="p", data_dir=str(data)))
    ids = [set(open_repository(m, "p").refresh_index().entries.keys()) for m in (fresh, other)]
    assert ids[0] and not ids[0] & ids[1]


def test_config_says_version_2_the_scheme_and_keys_and_nothing_else(tmp_path):
    mgr = encrypted(tmp_path / "root")
    repo = mgr._repo("p", create=True)
    config = json.loads(repo.store.get("config.json"))
    assert config["version"] == 2
    assert config["encryption"] == {
        "scheme": crypto.SCHEME,
        "keys": repo.key_ids(),
        "master_check": crypto.master_check(repo._master),  # HKDF output: tells nothing
    }
    assert config["chunker"]["seed"] == 0  # the real seed is derived from the key, never stored
    plain = BackupManager(tmp_path / "plain")._repo("q", create=True)
    assert json.loads(plain.store.get("config.json"))["version"] == 1
    assert "encryption" not in json.loads(plain.store.get("config.json"))


def test_format_1_code_refuses_an_encrypted_project(tmp_path, monkeypatch):
    encrypted(tmp_path / "root")._repo("p", create=True)
    monkeypatch.setattr(repository_module, "FORMAT_VERSION", 1)
    with pytest.raises(NewerFormat):
        Repository(tmp_path / "root", "p").check_format()


async def test_wrong_password_writes_and_locks_nothing(tmp_path):
    data = tmp_path / "data"
    tree(data)
    await encrypted(tmp_path / "root").create(CreateRequest(project_id="p", data_dir=str(data)))
    base = tmp_path / "root" / "backups" / "p"
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*")}
    for password in (lambda _p: "wrong", None):
        bad = BackupManager(tmp_path / "root", password=password)
        with pytest.raises(WrongPassword) as caught:
            await bad.create(CreateRequest(project_id="p", data_dir=str(data)))
        assert caught.value.exit_code == 12 and "\n" not in str(caught.value)
        with pytest.raises(WrongPassword):
            await bad.list("p")
    assert {p: p.stat().st_mtime_ns for p in base.rglob("*")} == before


def test_a_locked_encrypted_repository_refuses_to_write_in_the_clear(tmp_path):
    encrypted(tmp_path / "root")._repo("p", create=True)
    locked_repo = Repository(tmp_path / "root", "p")  # never unlocked
    with pytest.raises(WrongPassword):
        locked_repo.save_settings(x=1)
    # a config rewritten to format 1 does not make it plain: its key objects say otherwise
    cfg = tmp_path / "root" / "backups" / "p" / "config.json"
    raw = json.loads(cfg.read_bytes())
    raw["version"] = 1
    del raw["encryption"]
    cfg.write_text(json.dumps(raw))
    with pytest.raises(WrongPassword):
        Repository(tmp_path / "root", "p").save_settings(x=1)


async def test_tampering_is_damage_named_by_verify_and_check(tmp_path):
    data = tmp_path / "data"
    tree(data)
    mgr = encrypted(tmp_path / "root")
    one = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    (data / "x.txt").write_bytes(b"another")
    two = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    store = project_store(mgr, "p")
    # a flipped bit in the middle of a pack (inside a sealed chunk)
    [pack] = [o for o in store.list("packs/") if o.size > MiB][:1]
    flip_byte(store, pack.name, pack.size // 3)
    fresh = BackupManager(tmp_path / "root", password=lambda _p: PASSWORD)
    result = await fresh.verify("p", one.id)
    assert not result.ok and [d.path for d in result.damaged_files] == ["big.bin"], result
    check = await fresh.check("p", read_data=True)
    assert not check.ok
    # two backups' manifests swapped: each is sealed to its own name, neither opens
    a, b = (Repository.manifest_name(Repository, i) for i in (one.id, two.id))  # type: ignore[arg-type]
    ra, rb = store.get(a), store.get(b)
    store.put(a, rb)
    store.put(b, ra)
    again = BackupManager(tmp_path / "root", password=lambda _p: PASSWORD)
    for backup_id in (one.id, two.id):
        verdict = await again.verify("p", backup_id)
        assert not verdict.ok
        assert not verdict.checksum_ok or verdict.errors, verdict
    assert not (await again.check("p")).ok
    # two backups' metadata swapped: neither opens, check names both, verify is one Damaged
    ma, mb = (f"backup_{i}/metadata.json" for i in (one.id, two.id))
    ra, rb = store.get(ma), store.get(mb)
    store.put(ma, rb)
    store.put(mb, ra)
    last = BackupManager(tmp_path / "root", password=lambda _p: PASSWORD)
    checked = await last.check("p")
    assert not checked.ok
    assert all(any(i in e for e in checked.errors) for i in (one.id, two.id)), checked.errors
    with pytest.raises(Damaged) as caught:
        await last.verify("p", one.id)
    assert "does not authenticate" in str(caught.value) and "\n" not in str(caught.value)


async def test_copy_between_encrypted_and_plain_both_ways(tmp_path):
    data = tmp_path / "data"
    tree(data)
    src = encrypted(tmp_path / "enc")
    made = await src.create(CreateRequest(project_id="p", data_dir=str(data)))
    # encrypted -> plain: the plain target exists (a copy never decrypts unasked)
    plain = BackupManager(tmp_path / "plain")
    plain._repo("p", create=True)
    await src.copy("p", str(tmp_path / "plain"))
    target = BackupManager(tmp_path / "plain")
    out = tmp_path / "out1"
    await target.restore(RestoreRequest(project_id="p", backup_id=made.id, restore_dir=str(out)))
    assert read_tree(out) == read_tree(data)
    assert json.loads((tmp_path / "plain/backups/p/config.json").read_bytes())["version"] == 1
    # plain -> a new encrypted target (the copy's manager encrypts new projects)
    sealer = BackupManager(tmp_path / "plain", password=lambda _p: "second", encrypt=True)
    await sealer.copy("p", str(tmp_path / "enc2"))
    enc2 = BackupManager(tmp_path / "enc2", password=lambda _p: "second")
    assert (await enc2.check("p", read_data=True)).ok
    out = tmp_path / "out2"
    await enc2.restore(RestoreRequest(project_id="p", backup_id=made.id, restore_dir=str(out)))
    assert read_tree(out) == read_tree(data)
    objects = every_object(enc2, "p")
    assert not any(NAME.encode() in raw or CONTENT in raw for raw in objects.values())
    # an encrypted source into a new target: the target is encrypted too
    await src.copy("p", str(tmp_path / "enc3"))
    assert Repository(tmp_path / "enc3", "p").encrypted()


def test_keys_add_remove_and_the_last_one_refused(tmp_path):
    mgr = encrypted(tmp_path / "root")
    repo = mgr._repo("p", create=True)
    first = repo.unlocked_key
    second = mgr.key_add("p", "machine")
    assert {k["id"] for k in mgr.key_list("p")} == {first, second}
    assert all("wrap" not in k for k in mgr.key_list("p"))
    machine = BackupManager(tmp_path / "root", password=lambda _p: "machine")
    assert machine._repo("p").unlocked_key == second
    mgr.key_remove("p", first)
    with pytest.raises(WrongPassword):
        BackupManager(tmp_path / "root", password=lambda _p: PASSWORD)._repo("p")
    with pytest.raises(Exception) as caught:
        machine.key_remove("p", second)
    assert "last key" in str(caught.value)
    assert machine._repo("p").key_ids() == [second]
    # a damaged object, a stray file or a copy of the key under keys/ opens nothing: the
    # last key that can open the project is still refused
    keys_dir = tmp_path / "root" / "backups" / "p" / "keys"
    (keys_dir / ("d" * 32)).write_bytes(b"twenty damaged bytes")
    (keys_dir / ("c" * 32)).write_bytes((keys_dir / second).read_bytes())
    with pytest.raises(Exception) as caught:
        machine.key_remove("p", second)
    assert "last key" in str(caught.value)
    (keys_dir / ("d" * 32)).unlink()
    (keys_dir / ("c" * 32)).unlink()
    # a key object moved to another id does not open (the wrapped key is bound to its id)
    keys = tmp_path / "root" / "backups" / "p" / "keys"
    (keys / second).rename(keys / ("0" * 32))
    with pytest.raises(WrongPassword):
        BackupManager(tmp_path / "root", password=lambda _p: "machine")._repo("p")


# --- the CLI, in real processes -----------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def nb(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(**env),
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    return proc.stderr


@pytest.mark.slow
async def test_cli_password_sources_and_wrong_password_exit_12(tmp_path):
    data = tmp_path / "data"
    tree(data)
    root = tmp_path / "root"
    made = nb(root, "--json", "create", "p", str(data), "--encrypt", NEXUS_BACKUP_PASSWORD="pw")
    assert made.returncode == 0, made.stderr
    assert Repository(root, "p").encrypted()
    pw_file = tmp_path / "pw"
    pw_file.write_text("pw\n")
    for args, env in (
        ((), {"NEXUS_BACKUP_PASSWORD": "pw"}),
        (("--password-file", str(pw_file)), {}),
        (("--password-command", f"cat {pw_file}"), {}),
    ):
        listed = nb(root, *args, "--json", "list", "p", **env)
        assert listed.returncode == 0 and json.loads(listed.stdout), listed.stderr
    assert "wrong password" in one_line(nb(root, "list", "p", NEXUS_BACKUP_PASSWORD="no"), 12)
    assert "stdin is not a terminal" in one_line(nb(root, "list", "p"), 12)
    assert "exited with" in one_line(nb(root, "--password-command", "false", "list", "p"), 2)
    # a plain project needs no password, and create without --encrypt keeps it plain
    assert nb(root, "create", "plain", str(data)).returncode == 0
    assert not Repository(root, "plain").encrypted()
    assert nb(root, "list", "plain").returncode == 0


@pytest.mark.slow
def test_cli_key_commands(tmp_path):
    root = tmp_path / "root"
    encrypted(root)._repo("p", create=True)
    add = nb(
        root, "key", "add", "p", NEXUS_BACKUP_PASSWORD=PASSWORD, NEXUS_BACKUP_NEW_PASSWORD="two"
    )
    assert add.returncode == 0 and "added" in add.stdout, add.stderr
    listed = nb(root, "--json", "key", "list", "p", NEXUS_BACKUP_PASSWORD="two")
    keys = json.loads(listed.stdout)
    assert len(keys) == 2 and sum(k["current"] for k in keys) == 1
    current = next(k["id"] for k in keys if k["current"])
    other = next(k["id"] for k in keys if not k["current"])
    assert nb(root, "key", "remove", "p", other, NEXUS_BACKUP_PASSWORD="two").returncode == 0
    refused = nb(root, "key", "remove", "p", current, NEXUS_BACKUP_PASSWORD="two")
    assert "last key" in one_line(refused, 1)
    no_new = nb(root, "key", "passwd", "p", NEXUS_BACKUP_PASSWORD="two")
    assert "new password" in one_line(no_new, 2)
    changed = nb(
        root, "key", "passwd", "p", NEXUS_BACKUP_PASSWORD="two", NEXUS_BACKUP_NEW_PASSWORD="three"
    )
    assert changed.returncode == 0, changed.stderr
    assert nb(root, "key", "list", "p", NEXUS_BACKUP_PASSWORD="three").returncode == 0
    assert one_line(nb(root, "key", "list", "p", NEXUS_BACKUP_PASSWORD="two"), 12)


_KILLER = """
import os, signal, sys
from core.repo import repository
from core.storage.local import LocalStore
stage = sys.argv[1]
real_put_new, real_delete = LocalStore.put_new, LocalStore.delete
def put_new(self, name, data):
    if stage == "before-add" and name.startswith("keys/"):
        os.kill(os.getpid(), signal.SIGKILL)
    real_put_new(self, name, data)
    if stage == "after-add" and name.startswith("keys/"):
        os.kill(os.getpid(), signal.SIGKILL)
def delete(self, name):
    real_delete(self, name)
    if stage == "after-remove" and name.startswith("keys/"):
        os.kill(os.getpid(), signal.SIGKILL)
LocalStore.put_new, LocalStore.delete = put_new, delete
from cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("stage", ["before-add", "after-add", "after-remove"])
def test_sigkill_during_key_passwd_leaves_the_old_or_the_new_password(tmp_path, stage):
    """A real `key passwd` process SIGKILLed before its new key lands, between the new key
    and the removal of the old, and right after: the project opens with the old password or
    the new one, never with neither."""
    root = tmp_path / "root"
    encrypted(root)._repo("p", create=True)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, stage, "--root", str(root), "key", "passwd", "p"],
        cwd=REPO,
        env=_env(NEXUS_BACKUP_PASSWORD=PASSWORD, NEXUS_BACKUP_NEW_PASSWORD="new"),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    opens = []
    for password in (PASSWORD, "new"):
        try:
            BackupManager(root, password=lambda _p, pw=password: pw)._repo("p")
            opens.append(password)
        except WrongPassword:
            pass
    expected = {"before-add": [PASSWORD], "after-add": [PASSWORD, "new"], "after-remove": ["new"]}
    assert opens == expected[stage]
    # the killed process's exclusive lock is a dead process's: the next writer goes ahead
    again = BackupManager(root, password=lambda _p: opens[0])
    added = again.key_add("p", "third")
    again.key_remove("p", added)


def _flip_wrapped_key(key_object: Path) -> None:
    """One bit of the wrapped master key flipped: the object still parses, opens nothing."""
    obj = json.loads(key_object.read_bytes())
    data = bytearray(base64.b64decode(obj["wrap"]["data"]))
    data[3] ^= 0x01
    obj["wrap"]["data"] = base64.b64encode(bytes(data)).decode()
    key_object.write_text(json.dumps(obj))


def test_the_only_key_known_to_open_is_never_removed_beside_a_damaged_one(tmp_path):
    """Two keys, the second's wrapped key damaged (a flipped bit: it parses, opens nothing).
    Removing the first, with its own password, would leave a project nobody can open: refused
    (one line, exit 1); with the other key's password it is removed, as restic does."""
    root = tmp_path / "root"
    encrypted(root)._repo("p", create=True)
    add = nb(
        root, "key", "add", "p", NEXUS_BACKUP_PASSWORD=PASSWORD, NEXUS_BACKUP_NEW_PASSWORD="two"
    )
    assert add.returncode == 0, add.stderr
    keys = json.loads(nb(root, "--json", "key", "list", "p", NEXUS_BACKUP_PASSWORD=PASSWORD).stdout)
    first = next(k["id"] for k in keys if k["current"])
    second = next(k["id"] for k in keys if not k["current"])
    keys_dir = root / "backups" / "p" / "keys"
    intact = (keys_dir / second).read_bytes()
    _flip_wrapped_key(keys_dir / second)
    refused = nb(root, "key", "remove", "p", first, NEXUS_BACKUP_PASSWORD=PASSWORD)
    assert "only key known to open it" in one_line(refused, 1)
    assert sorted(p.name for p in keys_dir.iterdir()) == sorted([first, second])
    assert nb(root, "list", "p", NEXUS_BACKUP_PASSWORD=PASSWORD).returncode == 0
    # the second repaired: opened with its password, the first goes
    (keys_dir / second).write_bytes(intact)
    assert nb(root, "key", "remove", "p", first, NEXUS_BACKUP_PASSWORD="two").returncode == 0
    assert nb(root, "list", "p", NEXUS_BACKUP_PASSWORD="two").returncode == 0


def test_key_passwd_keeps_the_old_key_when_the_new_one_does_not_read_back(tmp_path, monkeypatch):
    """A store that keeps other bytes than it was given for the new key object (a failing
    disk): `key passwd` stops before it removes the old key, which still opens."""
    root = tmp_path / "root"
    mgr = encrypted(root)
    mgr._repo("p", create=True)
    real_put_new = LocalStore.put_new

    def keeps_other_bytes(self, name, data):
        if name.startswith("keys/"):
            obj = json.loads(data)
            wrapped = bytearray(base64.b64decode(obj["wrap"]["data"]))
            wrapped[0] ^= 0x80
            obj["wrap"]["data"] = base64.b64encode(bytes(wrapped)).decode()
            data = json.dumps(obj).encode()
        real_put_new(self, name, data)

    monkeypatch.setattr(LocalStore, "put_new", keeps_other_bytes)
    with pytest.raises(Damaged, match="does not read back"):
        mgr.key_passwd("p", "new")
    monkeypatch.undo()
    fast_kdf(monkeypatch)
    assert BackupManager(root, password=lambda _p: PASSWORD)._repo("p").unlocked_key
