"""Corruption: bytes flipped in a pack, an index file, a manifest, a metadata.json; a pack
truncated or deleted. verify and check must name exactly the damaged backups and files (worked
out here from the manifests and the index, independently of the validator), undamaged files
must still restore, nothing may crash (the CLI prints one line, never a traceback), and the
index must be rebuildable from the packs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import rel_harness as h
import zstandard

from core.errors import Damaged, NexusError
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.repo import manifest as mf
from core.repo.index import decode_index
from core.repo.packs import pack_name
from core.repo.repository import Repository

P = h.PROJECT


@dataclass
class Repo:
    root: Path
    tmp: Path
    backups: dict[str, h.Snapshot]  # id -> tree
    order: list[str]

    @property
    def pdir(self) -> Path:
        return h.project_dir(self.root)

    def repo(self) -> Repository:
        r = Repository(self.root, P)
        r.refresh_index()
        return r

    def users(self) -> dict[bytes, set[tuple[str, str]]]:
        """chunk -> {(backup id, file path)} from the manifests."""
        repo = self.repo()
        out: dict[bytes, set[tuple[str, str]]] = defaultdict(set)
        for bid in self.backups:
            for e in mf.iter_entries(repo.read_manifest(bid)):
                if e.kind == mf.FILE:
                    for hx, _n in e.chunks:
                        out[bytes.fromhex(hx)].add((bid, e.display_path))
        return out

    def damaged_by(self, digests: set[bytes]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        users = self.users()
        for d in digests:
            for bid, path in users.get(d, ()):
                out[bid].add(path)
        return dict(out)


async def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    """nexus-backup in this process (in a thread: main() runs its own event loop)."""
    argv = ["--root", str(root), *args]
    code, out, err = await asyncio.to_thread(h.cli_inproc, argv)
    assert h.nexus_error_line(err), f"nexus-backup {args}: {err}"
    assert code in (0, 1, 2, 3, 4), (args, code, err)
    return subprocess.CompletedProcess(argv, code, out, err)


@pytest.fixture
async def repo3(tmp_path: Path, seed: int) -> Repo:
    return await build_repo3(tmp_path, seed)


async def build_repo3(tmp_path: Path, seed: int) -> Repo:
    """Three backups: b1 and b2 of one tree (b2 after edits, sharing most chunks), b3 of
    another; small chunks and packs so that files spread over many packs."""
    rng = random.Random(seed)
    root = tmp_path / "repo"
    h.init_project(root)
    src = tmp_path / "src"
    other = tmp_path / "other"
    for top, n in ((src, 14), (other, 6)):
        top.mkdir()
        for i in range(n):
            (top / f"{top.name}{i:02}.bin").write_bytes(
                rng.randbytes(rng.randrange(20_000, 90_000))
            )
    (src / "sub").mkdir()
    (src / "sub" / "nested.txt").write_bytes(b"nested\n" * 3000)
    mgr = BackupManager(root)
    backups: dict[str, h.Snapshot] = {}
    order = []
    b1 = await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))
    backups[b1.id] = h.snapshot(src)
    for p in sorted(src.glob("*.bin"))[:4]:
        data = bytearray(p.read_bytes())
        data[100:200] = rng.randbytes(100)
        p.write_bytes(bytes(data))
    (src / "added.bin").write_bytes(rng.randbytes(40_000))
    b2 = await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))
    backups[b2.id] = h.snapshot(src)
    b3 = await mgr.create(CreateRequest(project_id=P, data_dir=str(other), data_dir_change=True))
    backups[b3.id] = h.snapshot(other)
    order = [b1.id, b2.id, b3.id]
    return Repo(root, tmp_path, backups, order)


async def verify_map(root: Path, ids: list[str]) -> dict[str, set[str]]:
    """backup -> what verify names: its damaged files, plus '<backup>' when the backup as a
    whole fails (metadata unreadable, manifest not matching its checksum)."""
    mgr = BackupManager(root)
    out: dict[str, set[str]] = {}
    for bid in ids:
        try:
            v = await mgr.verify(P, bid)
        except Damaged:
            out[bid] = {"<backup>"}
            continue
        if not v.ok:
            out[bid] = {d.path for d in v.damaged_files}
            if not v.checksum_ok or not out[bid]:
                out[bid].add("<backup>")
    return out


async def assert_undamaged_files_restore(r: Repo, damaged: dict[str, set[str]]) -> None:
    """Every file verify did not name restores byte for byte (with --path)."""
    mgr = BackupManager(r.root)
    for bid, tree in r.backups.items():
        bad = damaged.get(bid, set())
        if "<backup>" in bad:
            continue
        good = [k.decode() for k, v in tree.items() if v[0] == "f" and k.decode() not in bad]
        if not good:  # (no paths would mean everything)
            continue
        target = r.tmp / f"undamaged-{bid}"
        shutil.rmtree(target, ignore_errors=True)
        res = await mgr.restore(
            RestoreRequest(project_id=P, backup_id=bid, restore_dir=str(target), paths=good)
        )
        assert res.verified
        got = h.snapshot(target)
        for rel in good:
            key = rel.encode()
            assert got.get(key) == tree[key], f"{bid}: undamaged {rel} did not restore"
        shutil.rmtree(target)


async def assert_damaged_restore_fails_cleanly(r: Repo, damaged: dict[str, set[str]]) -> None:
    """A whole restore of a damaged backup: a backup whose manifest is damaged refuses
    (NexusError, nothing torn); otherwise every damaged file is named, not written (no temp
    file, nothing torn), and every other file restores byte for byte."""
    mgr = BackupManager(r.root)
    for bid, bad in damaged.items():
        target = r.tmp / f"damaged-{bid}"
        req = RestoreRequest(project_id=P, backup_id=bid, restore_dir=str(target))
        if "<backup>" in bad:
            with pytest.raises(NexusError):
                await mgr.restore(req)
        else:
            try:
                res = await mgr.restore(req)
            except NexusError:  # chunks the index lacks: refused before anything is written
                res = None
            if res is not None:
                assert not res.verified and res.files_damaged == len(bad)
                assert {d.path for d in res.damaged_files} == bad
                got = h.snapshot(target)
                for rel, entry in r.backups[bid].items():
                    if entry[0] == "f" and rel.decode() not in bad:
                        assert got.get(rel) == entry, f"{bid}: undamaged {rel!r} not restored"
                for rel in bad:
                    assert rel.encode() not in got, f"{bid}: damaged {rel} was written"
        if target.exists():
            assert not h.restore_temp_files(target)
            for rel, entry in h.snapshot(target).items():
                if entry[0] == "f":
                    assert entry == r.backups[bid][rel], f"torn {rel!r} after a failed restore"
        shutil.rmtree(target, ignore_errors=True)


async def assert_cli_reports(r: Repo, damaged: dict[str, set[str]]) -> None:
    """verify (each backup) exits 4 exactly for the damaged ones and names their files; list
    and info never crash."""
    for bid in r.order:
        res = await cli(r.root, "--json", "verify", P, bid)
        if bid in damaged:
            assert res.returncode == 4, (bid, res.returncode, res.stdout[-300:], res.stderr)
            if "<backup>" not in damaged[bid]:
                named = {d["path"] for d in json.loads(res.stdout)["damaged_files"]}
                assert named == damaged[bid]
        else:
            assert res.returncode == 0, (bid, res.stdout[-300:], res.stderr)
        await cli(r.root, "info", P, bid)
    await cli(r.root, "list", P)
    await cli(r.root, "verify", P, "--all")


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def pack_path(r: Repo, pack_id: str) -> Path:
    return r.pdir / pack_name(pack_id)


def shared_chunk(r: Repo) -> tuple[bytes, object]:
    """A chunk used by both b1 and b2 (so the damage spans two backups) and its location."""
    repo = r.repo()
    users = r.users()
    b1, b2, _b3 = r.order
    for d, who in sorted(users.items()):
        if {b for b, _p in who} >= {b1, b2}:
            return d, repo.index.get(d)
    raise AssertionError("no shared chunk")


# --- packs ---------------------------------------------------------------------------------------


async def test_flipped_byte_in_a_pack(repo3: Repo):
    r = repo3
    digest, loc = shared_chunk(r)
    flip(pack_path(r, loc.pack_id), loc.offset + loc.length // 2)
    want = r.damaged_by({digest})
    assert set(want) >= set(r.order[:2])
    assert await verify_map(r.root, r.order) == want
    check = await BackupManager(r.root).check(P, read_data=True)
    assert not check.ok
    assert {e.split()[1] for e in check.errors if e.startswith("backup ")} == set(want)
    await assert_undamaged_files_restore(r, want)
    await assert_damaged_restore_fails_cleanly(r, want)
    await assert_cli_reports(r, want)
    # rebuilding the index (from the packs' headers) changes nothing about blob damage
    rebuilt = await BackupManager(r.root).rebuild_index(P)
    assert not rebuilt.damaged_packs
    assert await verify_map(r.root, r.order) == want


async def test_truncated_pack(repo3: Repo):
    r = repo3
    _digest, loc = shared_chunk(r)
    path = pack_path(r, loc.pack_id)
    size = path.stat().st_size
    cut = loc.offset + 1  # cuts into the shared chunk: it and every later blob are gone
    os.truncate(path, cut)
    repo = r.repo()
    lost = {
        d
        for d, l2 in repo.index.entries.items()
        if l2.pack_id == loc.pack_id and l2.offset + l2.length > cut
    }
    assert lost and cut < size
    want = r.damaged_by(lost)
    assert await verify_map(r.root, r.order) == want
    await assert_undamaged_files_restore(r, want)
    await assert_damaged_restore_fails_cleanly(r, want)
    await assert_cli_reports(r, want)
    check = await BackupManager(r.root).check(P, read_data=True)
    assert any(loc.pack_id[:16] in e for e in check.errors), check.errors
    # the header is gone with the tail: a rebuild reports the pack, salvages the chunks before
    # the cut (the old index still locates them) and sets the damaged pack aside, not deleted
    rebuilt = await BackupManager(r.root).rebuild_index(P)
    assert [p.rsplit("/", 1)[-1] for p in rebuilt.damaged_packs] == [loc.pack_id]
    in_pack = {d for d, l2 in repo.index.entries.items() if l2.pack_id == loc.pack_id}
    assert rebuilt.chunks_salvaged == len(in_pack - lost)
    assert (
        r.root
        / "backups"
        / P
        / "quarantine"
        / pack_path(r, loc.pack_id).relative_to(r.root / "backups" / P)
    ).stat().st_size == cut
    assert await verify_map(r.root, r.order) == want
    await assert_undamaged_files_restore(r, want)


async def test_deleted_pack(repo3: Repo):
    r = repo3
    _digest, loc = shared_chunk(r)
    repo = r.repo()
    gone = {d for d, l2 in repo.index.entries.items() if l2.pack_id == loc.pack_id}
    pack_path(r, loc.pack_id).unlink()
    want = r.damaged_by(gone)
    assert await verify_map(r.root, r.order) == want
    await assert_undamaged_files_restore(r, want)
    await assert_damaged_restore_fails_cleanly(r, want)
    await assert_cli_reports(r, want)
    check = await BackupManager(r.root).check(P)
    assert any("missing" in e and loc.pack_id[:16] in e for e in check.errors), check.errors


async def test_flipped_byte_in_a_pack_header_is_found_by_check(repo3: Repo):
    r = repo3
    _digest, loc = shared_chunk(r)
    path = pack_path(r, loc.pack_id)
    flip(path, path.stat().st_size - 30)  # in the header/trailer, not in any blob
    assert await verify_map(r.root, r.order) == {}  # blobs are intact
    check = await BackupManager(r.root).check(P, read_data=True)
    assert any(loc.pack_id[:16] in e for e in check.errors), check.errors
    rebuilt = await BackupManager(r.root).rebuild_index(P)
    assert [p.rsplit("/", 1)[-1] for p in rebuilt.damaged_packs] == [loc.pack_id]


# --- index files ---------------------------------------------------------------------------------


async def test_flipped_byte_in_an_index_file_then_rebuild(repo3: Repo):
    r = repo3
    store = r.repo().store
    files = sorted(o.name for o in store.list("index/"))
    listed = {name: {d for d, _l in decode_index(store.get(name))} for name in files}
    victim = max(files, key=lambda n: len(listed[n]))
    elsewhere = set().union(*(v for n, v in listed.items() if n != victim))
    flip(r.pdir / victim, 40)
    want = r.damaged_by(listed[victim] - elsewhere)
    assert want
    assert await verify_map(r.root, r.order) == want
    check = await BackupManager(r.root).check(P)
    assert any(victim in e for e in check.errors), check.errors
    await assert_undamaged_files_restore(r, want)
    await assert_cli_reports(r, want)
    rebuilt = await BackupManager(r.root).rebuild_index(P)
    assert not rebuilt.damaged_packs
    mgr = BackupManager(r.root)
    assert (await mgr.check(P, read_data=True)).ok
    await h.assert_all_restore(mgr, r.backups, r.tmp / "scratch")


# --- manifests and metadata ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["start", "middle", "end"])
async def test_flipped_byte_in_a_manifest(repo3: Repo, where: str):
    r = repo3
    bid = r.order[1]
    path = r.pdir / f"backup_{bid}" / "data" / "manifest.zst"
    size = path.stat().st_size
    flip(path, {"start": 8, "middle": size // 2, "end": size - 3}[where])
    got = await verify_map(r.root, r.order)
    # the backup is named as a whole (its checksum no longer matches); where the flip hit a
    # chunk hash that still parses, that file is named too
    assert set(got) == {bid} and "<backup>" in got[bid], got
    want = {bid: {"<backup>"}}
    await assert_undamaged_files_restore(r, want)
    await assert_damaged_restore_fails_cleanly(r, want)
    await assert_cli_reports(r, want)
    check = await BackupManager(r.root).check(P, read_data=True)
    assert [e for e in check.errors if bid in e] and all(
        bid in e for e in check.errors if e.startswith("backup ")
    ), check.errors


async def test_metadata_checksum_flipped(repo3: Repo):
    """A flip in metadata.json's checksum: the backup no longer matches its manifest."""
    r = repo3
    bid = r.order[0]
    path = r.pdir / f"backup_{bid}" / "metadata.json"
    text = path.read_bytes()
    pos = text.index(b'"checksum": "blake3:') + len(b'"checksum": "blake3:') + 5
    data = bytearray(text)
    data[pos] = ord("0") if data[pos] != ord("0") else ord("1")
    path.write_bytes(bytes(data))
    want = {bid: {"<backup>"}}
    assert await verify_map(r.root, r.order) == want
    await assert_damaged_restore_fails_cleanly(r, want)
    await assert_cli_reports(r, want)


async def test_metadata_json_unparseable(repo3: Repo):
    r = repo3
    bid = r.order[2]
    flip(r.pdir / f"backup_{bid}" / "metadata.json", 0)
    want = {bid: {"<backup>"}}
    assert await verify_map(r.root, r.order) == want
    mgr = BackupManager(r.root)
    check = await mgr.check(P, read_data=True)
    assert [e for e in check.errors if bid in e], check.errors
    await assert_undamaged_files_restore(r, want)
    res = await cli(r.root, "--json", "verify", P, bid)
    assert res.returncode == 4 and "metadata.json" in res.stderr, res.stderr
    res = await cli(r.root, "--json", "info", P, bid)
    assert res.returncode == 4 and "metadata.json" in res.stderr, res.stderr
    await cli(r.root, "list", P)


async def test_verify_all_names_a_backup_with_damaged_metadata(repo3: Repo):
    r = repo3
    bid = r.order[2]
    flip(r.pdir / f"backup_{bid}" / "metadata.json", 0)
    res = await cli(r.root, "verify", P, "--all")
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    assert bid in res.stdout + res.stderr


async def test_random_single_byte_flips_in_metadata_are_caught_or_harmless(repo3: Repo, seed):
    """Any one flipped byte in metadata.json: either the backup is reported damaged, or it
    still restores byte for byte (a flip in, say, a count changes nothing restored)."""
    r = repo3
    bid = r.order[0]
    path = r.pdir / f"backup_{bid}" / "metadata.json"
    pristine = path.read_bytes()
    rng = random.Random(seed)
    for _ in range(10):
        pos = rng.randrange(len(pristine))
        data = bytearray(pristine)
        data[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        mgr = BackupManager(r.root)
        try:
            v = await mgr.verify(P, bid)
            caught = not v.ok
        except NexusError:
            caught = True
        if not caught:
            target = r.tmp / "flip-restore"
            shutil.rmtree(target, ignore_errors=True)
            await mgr.restore(RestoreRequest(project_id=P, backup_id=bid, restore_dir=str(target)))
            assert h.snapshot(target) == r.backups[bid], f"flip at {pos} went unnoticed"
        await cli(r.root, "info", P, bid)
    path.write_bytes(pristine)


# --- space reclaim on a damaged repository --------------------------------------------------------


async def test_delete_with_a_damaged_index_file_keeps_what_rebuild_can_recover(repo3: Repo):
    r = repo3
    store = r.repo().store
    first = sorted(o.name for o in store.list("index/"))[0]
    flip(r.pdir / first, 40)
    extra = r.tmp / "extra"
    extra.mkdir()
    (extra / "x").write_bytes(os.urandom(30_000))
    mgr = BackupManager(r.root)
    throwaway = await mgr.create(
        CreateRequest(project_id=P, data_dir=str(extra), data_dir_change=True)
    )
    await mgr.delete(P, throwaway.id)  # triggers a space reclaim
    mgr = BackupManager(r.root)
    await mgr.rebuild_index(P)
    assert await verify_map(r.root, r.order) == {}
    await h.assert_all_restore(BackupManager(r.root), r.backups, r.tmp / "scratch")


async def test_delete_with_a_damaged_metadata_keeps_that_backups_data(repo3: Repo):
    r = repo3
    bid = r.order[2]
    meta = r.pdir / f"backup_{bid}" / "metadata.json"
    pristine = meta.read_bytes()
    flip(meta, 0)
    mgr = BackupManager(r.root)
    await mgr.delete(P, r.order[0])  # triggers a space reclaim
    meta.write_bytes(pristine)  # the repair: metadata.json restored from elsewhere
    want = {bid: r.backups[bid]}
    await h.assert_all_restore(BackupManager(r.root), want, r.tmp / "scratch")


async def test_reclaim_after_an_interrupted_reclaim_keeps_its_own_packs(tmp_path: Path):
    """The state a SIGKILL leaves between a reclaim's rewritten pack and its new index is
    rebuilt here exactly (the test_sigkill campaign hits it at random): the backup deleted,
    the rewritten pack on disk, unindexed. The next reclaim rewrites the same pack again."""
    root = tmp_path / "repo"
    h.init_project(root)
    pdir = h.project_dir(root)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(30_000))
    (src / "b").write_bytes(os.urandom(30_000))
    mgr = BackupManager(root)
    b1 = await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))
    (src / "b").unlink()
    b2 = await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))
    want = {b2.id: h.snapshot(src)}
    saved = tmp_path / "saved"
    shutil.copytree(root, saved, symlinks=True)
    await mgr.delete(P, b1.id)  # the pack holding a+b is rewritten into one holding a
    rewritten = {p.name: p.read_bytes() for p in pdir.glob("packs/*/*")}
    shutil.rmtree(root)
    shutil.copytree(saved, root, symlinks=True)
    shutil.rmtree(pdir / f"backup_{b1.id}")  # the delete had removed the backup ...
    for name, data in rewritten.items():  # ... and the reclaim had written its new pack
        dest = pdir / pack_name(name)
        dest.parent.mkdir(mode=0o700, exist_ok=True)
        dest.write_bytes(data)
    mgr = BackupManager(root)
    (src / "c").write_bytes(os.urandom(30_000))
    b3 = await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))
    await mgr.delete(P, b3.id)  # reclaim again: the same rewrite, the same pack name
    mgr = BackupManager(root)
    check = await mgr.check(P, read_data=True)
    assert check.ok, check.errors
    await h.assert_all_restore(mgr, want, tmp_path / "scratch")


@pytest.mark.parametrize("checksum_fixed", [False, True], ids=["corrupted", "tampered"])
async def test_manifest_with_a_garbled_chunk_hash(repo3: Repo, checksum_fixed: bool):
    r = repo3
    bid = r.order[1]
    repo = r.repo()
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(repo.read_manifest(bid))
    lines = raw.split(b"\n")
    at = next(i for i, ln in enumerate(lines) if b'"ch":[["' in ln)
    pos = lines[at].index(b'"ch":[["') + 10
    lines[at] = lines[at][:pos] + b"g" + lines[at][pos + 1 :]  # one hex digit -> 'g'
    data = zstandard.ZstdCompressor().compress(b"\n".join(lines))
    repo.write_manifest(bid, data)
    if checksum_fixed:
        meta = repo.read_metadata(bid)
        meta.checksum = mf.checksum(data)
        repo.write_metadata(meta)
    mgr = BackupManager(r.root)
    got = await verify_map(r.root, r.order)
    assert set(got) == {bid}, got
    check = await mgr.check(P, read_data=True)
    assert not check.ok and all(bid in e for e in check.errors if e.startswith("backup ")), check
    with pytest.raises(NexusError):
        await mgr.restore(
            RestoreRequest(project_id=P, backup_id=bid, restore_dir=str(r.tmp / "garbled"))
        )
    res = await cli(r.root, "verify", P, bid)
    assert res.returncode == 4 and "internal error" not in res.stderr, res.stderr
