"""Issue #9's repository invariants, tried as an auditor would: odd repository states, other
pid namespaces, read-only media. Each test tries to make delete, reclaim, rebuild-index or a
read-only command destroy something, and checks with a byte-exact restore that it did not."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rel_harness as h

from core.errors import Conflict, Damaged, NexusError
from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, RestoreRequest
from core.repo import locks
from core.repo import manifest as mf
from core.repo.index import decode_index
from core.repo.packs import BlobLocation, pack_name, read_pack_entries
from core.repo.repository import Repository

P = "safe"


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _files(root: Path) -> dict[str, bytes]:
    """Every byte of a repository, to compare before and after a read-only command."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "logs" not in p.parts
    }


async def _restores(mgr: BackupManager, backup_id: str, want: dict[str, bytes], tmp: Path) -> None:
    out = tmp / f"out-{backup_id}-{time.monotonic_ns()}"
    await mgr.restore(RestoreRequest(project_id=P, backup_id=backup_id, restore_dir=str(out)))
    assert _tree(out) == want


@pytest.fixture
async def two(tmp_path: Path):
    """Two completed backups of two directories sharing no data, in separate packs."""
    root = tmp_path / "repo"
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "f.bin").write_bytes(os.urandom(300_000))
        (d / "g.txt").write_text(d.name * 1000)
    mgr = BackupManager(root)
    ma = await mgr.create(CreateRequest(project_id=P, data_dir=str(a)))
    mb = await mgr.create(CreateRequest(project_id=P, data_dir=str(b), data_dir_change=True))
    return root, mgr, (ma.id, _tree(a)), (mb.id, _tree(b))


def _pdir(root: Path) -> Path:
    return root / "backups" / P


@pytest.mark.parametrize("lost", [0, 1])
async def test_missing_index_file_then_delete_keeps_the_other_backup(two, tmp_path, lost):
    """The audit's case: one index file removed, an unrelated backup deleted. The packs the
    lost index named look unindexed; when the kept backup needs them, deleting them would
    destroy it: reclaim refuses. When only the deleted backup needed them, they go."""
    root, _mgr, (a_id, _a), (b_id, b_tree) = two
    victim = sorted((_pdir(root) / "index").iterdir())[lost]
    b_chunks = {
        d
        for d in Repository(root, P).refresh_index().entries
        if d in set(d2 for d2, _l in decode_index(victim.read_bytes()))
    }
    needed_by_b = bool(b_chunks & _chunks_of(root, b_id))
    victim.unlink()
    packs_before = sorted(p.name for p in _pdir(root).glob("packs/*/*"))
    res = await BackupManager(root).delete(P, a_id)
    if needed_by_b:
        assert res.reclaim_refused and "rebuild-index" in res.reclaim_refused
        assert sorted(p.name for p in _pdir(root).glob("packs/*/*")) == packs_before
        await BackupManager(root).rebuild_index(P)
    else:
        assert res.reclaim_refused is None and res.packs_deleted == 1
    await _restores(BackupManager(root), b_id, b_tree, tmp_path)


def _index_naming(root: Path, chunks: set[bytes]) -> Path:
    for f in (_pdir(root) / "index").iterdir():
        if {d for d, _l in decode_index(f.read_bytes())} & chunks:
            return f
    raise AssertionError("no index file names those chunks")


def _chunks_of(root: Path, backup_id: str) -> set[bytes]:
    repo = Repository(root, P)
    entries = mf.iter_entries(repo.read_manifest(backup_id))
    return {bytes.fromhex(h) for e in entries for h, _n in e.chunks}


async def test_cli_delete_says_why_no_space_was_reclaimed(two, tmp_path):
    root, _mgr, (a_id, _a), (b_id, b_tree) = two
    victim = _index_naming(root, _chunks_of(root, b_id))
    victim.unlink()
    code, out, err = await asyncio.to_thread(h.cli_inproc, ["--root", str(root), "delete", P, a_id])
    assert code == 1 and f"Deleted backup {a_id}" in out
    assert err.startswith("nexus-backup: error: space not reclaimed:") and err.count("\n") == 1
    await BackupManager(root).rebuild_index(P)
    await _restores(BackupManager(root), b_id, b_tree, tmp_path)


@pytest.mark.parametrize("state", ["missing", "truncated", "garbage", "future"])
async def test_odd_metadata_blocks_reclaim_and_survives_list(two, tmp_path, state):
    """A backup whose metadata.json is missing, cut, garbage or of a newer status: list and
    info run without touching it; a delete of another backup reclaims nothing; the manifest
    and its packs stay."""
    root, _mgr, (a_id, _a), (b_id, b_tree) = two
    meta = _pdir(root) / f"backup_{b_id}" / "metadata.json"
    original = meta.read_bytes()
    if state == "missing":
        meta.unlink()
    elif state == "truncated":
        meta.write_bytes(meta.read_bytes()[:40])
    elif state == "garbage":
        meta.write_bytes(b"\x00\xff" * 50)
    else:
        meta.write_text(meta.read_text().replace('"completed"', '"archived-v9"'))
    before = _files(root)
    fresh = BackupManager(root)
    for _ in range(2):
        assert b_id not in {m.id for m in await fresh.list(P)}
        assert b_id in await fresh.damaged_metadata(P)
        await fresh.projects()
        await fresh.check(P)
    assert _files(root) == before, "a read-only command changed the repository"
    res = await fresh.delete(P, a_id)
    assert res.reclaim_refused and b_id in res.reclaim_refused
    manifest = _pdir(root) / f"backup_{b_id}" / "data" / "manifest.zst"
    assert manifest.exists()
    # repaired (the metadata put back as it was), the backup restores whole
    meta.write_bytes(original)
    await _restores(BackupManager(root), b_id, b_tree, tmp_path)


async def test_backup_with_missing_metadata_can_be_deleted_on_purpose(two):
    root, mgr, (a_id, _a), (b_id, _b) = two
    (_pdir(root) / f"backup_{b_id}" / "metadata.json").unlink()
    await mgr.delete(P, b_id)
    assert not (_pdir(root) / f"backup_{b_id}").exists()
    assert {m.id for m in await mgr.list(P)} == {a_id}


async def test_read_only_commands_never_write(two, tmp_path):
    """list, info, projects, verify, check, browse and a restore (besides its target) leave
    every byte of the repository as it was, also after a crash left work to recover."""
    root, _mgr, (a_id, a_tree), (_b_id, _b) = two
    # leave a dead process's in-progress backup and lock behind
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    bdir = _pdir(root) / "backup_20200101-000000-dead00"
    bdir.mkdir()
    m = json.loads((_pdir(root) / f"backup_{a_id}" / "metadata.json").read_text())
    m.update(id="20200101-000000-dead00", status="running", checksum=None)
    (bdir / "metadata.json").write_text(json.dumps(m))
    before = _files(root)
    fresh = BackupManager(root)
    shown = {x.id: x for x in await fresh.list(P)}
    assert shown["20200101-000000-dead00"].status == BackupStatus.FAILED
    await fresh.info(P, a_id)
    await fresh.projects()
    await fresh.browse(P, a_id)
    await fresh.check(P, read_data=True)
    await fresh.restore(
        RestoreRequest(
            project_id=P, backup_id=a_id, restore_dir=str(tmp_path / "o"), checkpoint=False
        )
    )
    after = _files(root)
    after.pop(str((_pdir(root) / f"backup_{a_id}" / "verify.json").relative_to(root)), None)
    assert after == before
    assert _tree(tmp_path / "o") == a_tree
    # the next writer records what the crash left
    await fresh.recover(P)
    status = json.loads((bdir / "metadata.json").read_text())["status"]
    assert status == "failed"


async def test_restore_racing_a_delete_never_resurrects_it(two, tmp_path):
    """A restore that reads the metadata only under its lock cannot write a deleted backup
    back (it never writes metadata at all)."""
    root, mgr, (_a_id, _a), (b_id, _b) = two
    await mgr.delete(P, b_id)
    with pytest.raises(NexusError):
        await mgr.restore(RestoreRequest(project_id=P, backup_id=b_id, restore_dir=str(tmp_path)))
    assert not (_pdir(root) / f"backup_{b_id}").exists()


async def test_interrupted_delete_is_finished_not_reported_damaged(two):
    root, _mgr, (a_id, _a), (b_id, _b) = two
    repo = Repository(root, P)
    repo.store.put(f"deleting/{b_id}", b"")
    (_pdir(root) / f"backup_{b_id}" / "metadata.json").unlink()  # cut right after
    fresh = BackupManager(root)
    assert {m.id for m in await fresh.list(P)} == {a_id}
    assert await fresh.damaged_metadata(P) == []
    await fresh.recover(P)
    assert not (_pdir(root) / f"backup_{b_id}").exists()
    assert not (_pdir(root) / "deleting").exists()


async def test_flipped_pack_header_then_rebuild_then_delete_keeps_data(two, tmp_path):
    """The audit's case: a byte flipped in a pack's header, rebuild-index, then a delete. The
    pack's blobs verify, so rebuild keeps them; the damaged pack is set aside, not deleted."""
    root, mgr, (a_id, _a_tree), (b_id, b_tree) = two
    packs = sorted(_pdir(root).glob("packs/*/*"))
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[-40] ^= 0xFF  # inside the header, before the trailer
        pack.write_bytes(bytes(data))
    res = await mgr.rebuild_index(P)
    assert len(res.damaged_packs) == len(packs) and res.chunks_salvaged > 0
    for p in packs:
        kept = _pdir(root) / "quarantine" / p.relative_to(_pdir(root))
        assert kept.exists(), "a damaged pack was deleted instead of set aside"
    await mgr.delete(P, a_id)
    assert (await mgr.check(P, read_data=True)).ok
    await _restores(mgr, b_id, b_tree, tmp_path)


async def test_reclaim_refuses_a_pack_it_cannot_read(two, tmp_path):
    root, mgr, (a_id, _a), (b_id, b_tree) = two
    stray = _pdir(root) / "packs" / "ff" / ("ff" * 32)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"not a pack at all")
    res = await mgr.delete(P, a_id)
    assert res.reclaim_refused and "ffffffffffffffff" in res.reclaim_refused
    assert stray.exists()
    await _restores(mgr, b_id, b_tree, tmp_path)


def test_lock_of_another_boot_or_pid_namespace_is_not_judged_by_pid(tmp_path):
    """Two hosts with one hostname, or a container: a pid means nothing there. Only age
    breaks such a lock, so a running backup is never marked failed by another machine."""
    store = Repository(tmp_path, "x").store
    store.capabilities.local_root.mkdir(parents=True)  # type: ignore[attr-defined]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    base = locks.LockInfo(
        "locks/a.json",
        False,
        "create",
        "b1",
        dead.pid,
        None,
        locks.HOST,
        locks._now(),
        locks._now(),
    )
    for name, boot, ns in (
        ("other-boot", "another-boot-id", locks.PIDNS),
        ("other-ns", locks.BOOT_ID, "pid:[1]"),
        ("legacy", None, None),
    ):
        info = dataclasses.replace(base, name=f"locks/{name}.json", boot_id=boot, pidns=ns)
        store.put(info.name, info.to_json())
    assert all(not i.stale for i in locks.list_locks(store))
    assert locks.is_live_backup(store, "b1")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
async def test_list_in_another_pid_namespace_leaves_a_running_backup_alone(tmp_path):
    """A backup runs in a new pid namespace (a container); `list` and a writer's recovery
    in ours see its lock as live: the backup completes."""
    if os.geteuid() != 0:
        pytest.skip("unshare --pid needs root here")
    root = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i}").write_bytes(os.urandom(1 << 20))
    (tmp_path / "x").mkdir()
    await BackupManager(root).create(CreateRequest(project_id=P, data_dir=str(tmp_path / "x")))
    script = (
        "import asyncio,sys,time;from core.manager import BackupManager;"
        "from core.models import CreateRequest;import core.ops.backup as b\n"
        "orig=b.BackupRun.read\n"
        "def slow(self,*a):\n time.sleep(3); return orig(self,*a)\n"
        "b.BackupRun.read=slow\n"
        f"asyncio.run(BackupManager({str(root)!r}).create(CreateRequest(project_id={P!r},"
        f"data_dir={str(src)!r},data_dir_change=True)))"
    )
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script],
        env=h.driver_env(),
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(
                '"running"' in p.read_text() or '"pending"' in p.read_text()
                for p in _pdir(root).glob("backup_*/metadata.json")
            ):
                break
            time.sleep(0.02)
        mgr = BackupManager(root)
        listed = await mgr.list(P)
        assert any(m.status in (BackupStatus.RUNNING, BackupStatus.PENDING) for m in listed)
        assert await mgr.recover(P) == 0  # busy: nothing judged dead
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    statuses = [m.status for m in await BackupManager(root).list(P)]
    assert statuses == [BackupStatus.COMPLETED, BackupStatus.COMPLETED]


def _config(root: Path) -> Path:
    return _pdir(root) / "config.json"


@pytest.mark.parametrize(
    "text", ["[]", '"text"', '{"version": "one"}', '{"version": 1, "pack_size": "big"}', "{"]
)
async def test_config_of_the_wrong_shape_is_one_clear_line(two, text):
    root, _mgr, (a_id, _a), _b = two
    _config(root).write_text(text)
    fresh = BackupManager(root)
    with pytest.raises(Damaged, match=r"config\.json"):
        await fresh.create(CreateRequest(project_id=P, data_dir=str(root.parent / "a")))
    result = await fresh.check(P)
    assert not result.ok and any("config.json" in e for e in result.errors)
    code, _out, err = await asyncio.to_thread(
        h.cli_inproc, ["--root", str(root), "verify", P, a_id]
    )
    assert code in (1, 4) and h.nexus_error_line(err) and "config.json" in err


async def test_newer_format_is_refused_by_writers_listed_by_readers(two, tmp_path):
    root, _mgr, (a_id, _a), _b = two
    cfg = json.loads(_config(root).read_text())
    cfg["version"] = 99
    _config(root).write_text(json.dumps(cfg))
    before = _files(root)
    fresh = BackupManager(root)
    assert {m.id for m in await fresh.list(P)} >= {a_id}
    for op in (
        fresh.create(CreateRequest(project_id=P, data_dir=str(root.parent / "a"))),
        fresh.delete(P, a_id),
        fresh.rebuild_index(P),
        fresh.restore(RestoreRequest(project_id=P, backup_id=a_id, restore_dir=str(tmp_path))),
    ):
        with pytest.raises(NexusError, match="newer than this nexus-backup"):
            await op
    assert _files(root) == before


async def test_check_of_a_newer_format_says_so_and_is_not_damage(two, tmp_path):
    """`check` (quick, --read-data, --json) on a config of a newer format: one line saying it
    is newer, the exit code verify and restore give it (not 4, DAMAGED), nothing written;
    while a config that is garbage is still damage (exit 4)."""
    root, _mgr, (a_id, _a), _b = two
    cfg = json.loads(_config(root).read_text())
    cfg["version"] = 99
    _config(root).write_text(json.dumps(cfg))
    before = _files(root)
    verify = h.cli_process(root, "verify", P, a_id)
    assert verify.returncode == 1 and "newer than this nexus-backup" in verify.stderr
    for args in (["check", P], ["check", P, "--read-data"], ["--json", "check", P]):
        r = h.cli_process(root, *args)
        assert r.returncode == verify.returncode, (args, r.returncode, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and h.nexus_error_line(r.stderr), (args, r.stderr)
        assert "format 99, newer than this nexus-backup" in lines[0], lines[0]
        assert "DAMAGED" not in r.stdout + r.stderr and '"ok": false' not in r.stdout, r.stdout
        if "--json" in args:
            assert json.loads(r.stdout)["error"]["code"] == verify.returncode
    assert _files(root) == before
    _config(root).write_text("{garbage")
    damaged = h.cli_process(root, "check", P)
    assert damaged.returncode == 4 and "DAMAGED" in damaged.stdout, damaged.stdout


async def test_create_of_another_directory_needs_data_dir_change(two, tmp_path):
    root, mgr, (a_id, _a), (b_id, _b) = two
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    with pytest.raises(Conflict, match="--data-dir-change"):
        await mgr.create(CreateRequest(project_id=P, data_dir=str(other)))
    assert {m.id for m in await mgr.list(P)} == {a_id, b_id}
    code, _o, err = await asyncio.to_thread(
        h.cli_inproc, ["--root", str(root), "create", P, str(other)]
    )
    assert code == 1 and "--data-dir-change" in err and h.nexus_error_line(err)
    # without a directory, create backs up the remembered one; a checkpoint of another
    # directory (what a restore's safety copy is) never re-points the project
    code, out, _e = await asyncio.to_thread(
        h.cli_inproc,
        ["--root", str(root), "create", P, str(other), "--type", "checkpoint"],
    )
    assert code == 0
    code, out, _e = await asyncio.to_thread(h.cli_inproc, ["--root", str(root), "create", P])
    assert code == 0 and str(root.parent / "b") in out


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
async def test_read_only_repository_is_listed_verified_and_restored(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        src = tmp_path / "src"
        src.mkdir()
        (src / "f").write_bytes(os.urandom(200_000))
        meta = await BackupManager(mnt).create(CreateRequest(project_id=P, data_dir=str(src)))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        mgr = BackupManager(mnt)
        assert [p.project_id for p in await mgr.projects()] == [P]
        assert [m.id for m in await mgr.list(P)] == [meta.id]
        assert (await mgr.verify(P, meta.id)).ok
        assert (await mgr.check(P, read_data=True)).ok
        await _restores(mgr, meta.id, _tree(src), tmp_path)
        with pytest.raises(NexusError, match="read-only"):
            await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))
        # a restore over a changed target needs its checkpoint: refused, the target untouched
        target = tmp_path / "target"
        target.mkdir()
        (target / "f").write_bytes(b"mine")
        with pytest.raises(NexusError, match="--no-checkpoint"):
            await mgr.restore(
                RestoreRequest(project_id=P, backup_id=meta.id, restore_dir=str(target))
            )
        assert (target / "f").read_bytes() == b"mine"
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


async def test_latest_is_never_a_restores_own_checkpoint(two, tmp_path):
    """`restore latest` run twice over a changed target restores the backup both times: the
    first restore's automatic checkpoint (newer) is not what `latest` means."""
    _root, mgr, _a, (b_id, b_tree) = two
    target = tmp_path / "t"
    target.mkdir()
    (target / "f.bin").write_bytes(b"changed by hand")
    for _ in range(2):
        res = await mgr.restore(
            RestoreRequest(project_id=P, backup_id="latest", restore_dir=str(target))
        )
        assert res.backup_id == b_id
        assert {k: v for k, v in _tree(target).items() if k in b_tree} == b_tree
    assert (await mgr.info(P, "latest")).metadata.id == b_id


@dataclasses.dataclass
class Twice:
    root: Path
    digest: bytes  # a chunk both backups stored
    served: BlobLocation  # the copy the index serves
    spare: BlobLocation  # the other copy
    doomed: str  # the backup whose pack holds the spare copy: deleting it drops that pack
    kept: tuple[str, dict[str, bytes]]  # the other backup and its files


async def _stored_twice(tmp_path: Path) -> Twice:
    """Two backups that each stored one shared file, as two backups that ran at once do (the
    second ran while the index was hidden), each in a pack of its own."""
    root = tmp_path / "repo"
    shared = os.urandom(200_000)
    ids, trees = {}, {}
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        (d / "common.bin").write_bytes(shared)
        (d / f"only-{name}.bin").write_bytes(os.urandom(200_000))
        trees[name] = _tree(d)
    ids["a"] = (
        await BackupManager(root).create(CreateRequest(project_id=P, data_dir=str(tmp_path / "a")))
    ).id
    packs_of_a = {p.name for p in _pdir(root).glob("packs/*/*")}
    hidden = tmp_path / "hidden-index"
    shutil.move(_pdir(root) / "index", hidden)
    (_pdir(root) / "index").mkdir()
    req = CreateRequest(project_id=P, data_dir=str(tmp_path / "b"), data_dir_change=True)
    ids["b"] = (await BackupManager(root).create(req)).id
    for f in hidden.iterdir():
        shutil.move(f, _pdir(root) / "index" / f.name)
    repo = Repository(root, P)
    digest = min(_chunks_of(root, ids["a"]) & _chunks_of(root, ids["b"]))
    served = repo.refresh_index().get(digest)
    assert served is not None
    spare = next(
        BlobLocation(pack.name, offset, length, raw_length, flags)
        for pack in _pdir(root).glob("packs/*/*")
        if pack.name != served.pack_id
        for d, offset, length, raw_length, flags in read_pack_entries(
            repo.store, pack_name(pack.name), repo.codec
        )
        if d == digest
    )
    doomed = "a" if spare.pack_id in packs_of_a else "b"
    kept = "b" if doomed == "a" else "a"
    return Twice(root, digest, served, spare, ids[doomed], (ids[kept], trees[kept]))


def _flip_blob(root: Path, loc: BlobLocation) -> None:
    pack = _pdir(root) / "packs" / loc.pack_id[:2] / loc.pack_id
    data = bytearray(pack.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0xFF
    pack.write_bytes(bytes(data))


async def test_reclaim_keeps_the_intact_copy_of_a_chunk_damaged_where_served(tmp_path):
    """A chunk stored twice, its served copy damaged by the disk, and a delete whose pack
    holds the other copy: that copy is the last intact one. Reclaim serves it from a new pack
    instead of deleting it, and the backup that needs it still restores byte for byte."""
    t = await _stored_twice(tmp_path)
    _flip_blob(t.root, t.served)
    res = await BackupManager(t.root).delete(P, t.doomed)
    assert res.reclaim_refused is None and res.chunks_repaired == 1 and res.packs_deleted >= 1
    assert not (_pdir(t.root) / "packs" / t.spare.pack_id[:2] / t.spare.pack_id).exists()
    kept_id, kept_tree = t.kept
    await _restores(BackupManager(t.root), kept_id, kept_tree, tmp_path)
    log = "".join(p.read_text() for p in (t.root / "logs").iterdir())
    assert "1 chunk damaged where the index served them: reclaim kept" in log


async def test_reclaim_deletes_nothing_when_every_copy_is_damaged(tmp_path):
    t = await _stored_twice(tmp_path)
    _flip_blob(t.root, t.served)
    _flip_blob(t.root, t.spare)
    packs = sorted(p.name for p in _pdir(t.root).glob("packs/*/*"))
    res = await BackupManager(t.root).delete(P, t.doomed)
    assert res.reclaim_refused and "every other copy" in res.reclaim_refused
    assert res.reclaim_refused.count(t.digest.hex()[:16]) == 1
    assert sorted(p.name for p in _pdir(t.root).glob("packs/*/*")) == packs
