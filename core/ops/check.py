"""Whole-repository checks: the index against the packs' own headers, every backup verified,
and the index rebuilt from the packs alone when index files are lost or damaged."""

from __future__ import annotations

import contextlib
import struct
import time
from collections import defaultdict

import zstandard

from core import display
from core.errors import NexusError
from core.models import RESTORABLE, CheckResult, RebuildResult
from core.ops.progress import OperationContext
from core.repo.codec import DamagedObject, decompress_blob
from core.repo.index import PREFIX, decode_index, read_index_file, rebuild_from_packs
from core.repo.packs import (
    BlobLocation,
    PackWriter,
    pack_objects,
    read_pack_entries,
    salvage_entries,
)
from core.repo.repository import NewerFormat, Repository
from core.storage import ObjectExists, ObjectStore, StoreError
from core.validator import verify_backup


def check_repository(repo: Repository, *, read_data: bool, ctx: OperationContext) -> CheckResult:
    started = time.monotonic()
    result = CheckResult(
        project_id=repo.project_id, ok=True, read_data=read_data, checked_at=ctx.clock()
    )
    result.errors += _config_errors(repo)
    index = repo.refresh_index()
    for name, why in index.damaged.items():
        result.errors.append(f"index file {name} is damaged: {why}")
    on_disk = pack_objects(repo.store)
    by_pack = index.packs()
    ctx.set_phase("checking", files_total=len(on_disk))
    for pack_id, blobs in sorted(by_pack.items()):
        ctx.check()
        obj = on_disk.get(pack_id)
        if obj is None:
            result.errors.append(f"pack {pack_id[:16]} is indexed but missing")
            continue
        try:
            header = {
                h: (off, length)
                for h, off, length, _r, _f in read_pack_entries(repo.store, obj.name, repo.codec)
            }
        except (ValueError, struct.error, OSError, EOFError) as exc:
            result.errors.append(f"pack {pack_id[:16]} is damaged: {exc}")
            continue
        for digest, loc in blobs:
            if header.get(digest) != (loc.offset, loc.length):
                result.errors.append(f"pack {pack_id[:16]}: index disagrees with the pack header")
                break
        result.packs_checked += 1
        ctx.advance(files=1)
    orphans = sorted(set(on_disk) - set(by_pack))
    if orphans:
        result.warnings.append(f"{len(orphans)} packs are not indexed (left by an interrupted run)")
    metas, bad = repo.list_metadata()
    for backup_id in bad:
        if repo.empty_backup_dir(backup_id):  # a create killed before its first write
            result.warnings.append(f"backup {backup_id}: empty (removed by the next writer)")
        else:
            result.errors.append(f"backup {backup_id}: metadata.json is missing or damaged")
    for backup_id in sorted(repo.tombstones()):
        result.warnings.append(
            f"backup {backup_id}: its delete was interrupted (finished by the next writer)"
        )
    for meta in sorted(metas, key=lambda m: m.created_at):
        if meta.status not in RESTORABLE:
            continue
        verified = verify_backup(repo, meta, quick=not read_data, ctx=ctx)
        result.backups.append(verified)
        if not verified.ok:
            names = ", ".join(display.name(d.path) for d in verified.damaged_files[:5])
            result.errors.append(f"backup {meta.id} is damaged" + (f": {names}" if names else ""))
    result.ok = not result.errors
    result.duration_seconds = round(time.monotonic() - started, 3)
    ctx.finish()
    return result


def _config_errors(repo: Repository) -> list[str]:
    """A config that is missing or invalid is damage, reported; one of a newer format is
    raised before anything is read: this version cannot judge its objects, and they are
    not damaged for being newer (§7)."""
    try:
        repo.check_format()
    except NewerFormat:
        raise
    except NexusError as exc:
        return [str(exc)]
    return []


QUARANTINE = "quarantine/"


def quarantine(store: ObjectStore, name: str) -> str:
    """Keep a byte-for-byte copy of `name` under `quarantine/`; returns the copy's name.

    A copy never replaces another (invariant 2): an object damaged again under a name
    quarantined before (a stranger's file in `index/` each time a rebuild runs, a pack
    rebuilt and damaged again) is kept beside the earlier copy, as `NAME.1`, `NAME.2` ...;
    the same bytes already kept under one of those names are not copied twice."""
    data = store.get(name)
    target = QUARANTINE + name
    for n in range(1, QUARANTINE_COPIES + 1):
        try:
            store.put_new(target, data)
            return target
        except ObjectExists:
            if store.get(target) == data:
                return target
        target = f"{QUARANTINE}{name}.{n}"
    raise StoreError(
        f"{QUARANTINE}{name}: {QUARANTINE_COPIES} copies are kept there already; move some "
        "out of the repository and run rebuild-index again"
    )


#: Copies of one name `quarantine` keeps before it refuses to go on.
QUARANTINE_COPIES = 1000


def rebuild_index(repo: Repository, ctx: OperationContext) -> RebuildResult:
    """Replace every index file by one built from the packs' headers (exclusive lock held).

    Repair never loses what it cannot parse (invariant 2): a pack whose header is damaged keeps
    every chunk that still verifies (from the old index, else from its header read without its
    checksum): those chunks are copied into a new pack and the damaged pack, like a damaged
    index file, is moved to `quarantine/` (kept, never deleted by any automatic step)."""
    ctx.set_phase("rebuilding")
    old_names = [o.name for o in repo.store.list(PREFIX)]
    old: dict[str, list[tuple[bytes, BlobLocation]]] = defaultdict(list)
    bad_index: list[str] = []
    for name in old_names:
        try:
            for digest, loc in decode_index(read_index_file(repo.store, repo.codec, name)):
                old[loc.pack_id].append((digest, loc))
        except (DamagedObject, struct.error, OSError):
            bad_index.append(name)
    locations, damaged = rebuild_from_packs(repo.store, repo.codec)
    # Copies first, as stored (sealed): every object that cannot be parsed is kept, whatever
    # happens next.
    kept_as = [quarantine(repo.store, name) for name in damaged + bad_index]
    salvaged: list[tuple[bytes, BlobLocation]] = []
    writer = repo.pack_writer(lambda _p, locs: salvaged.extend(locs))
    notes: list[str] = []
    try:
        for name in damaged:
            ctx.check()
            kept = _salvage(repo, name, old.get(name.rsplit("/", 1)[-1], []), writer)
            notes.append(f"{name}: header damaged, {kept} chunks salvaged")
        writer.flush()
    except BaseException:
        writer.abort()
        raise
    # A damaged index file may bear the name the new one gets (both named by their content).
    for name in bad_index:
        repo.store.delete(name)
    new = repo.write_index(locations + salvaged)
    repaired = set(writer.pack_names)  # a salvage can rebuild a pack byte for byte, same name
    for name in damaged:
        if name not in repaired:
            repo.store.delete(name)
    for name in old_names:
        if name != new and name not in bad_index:
            repo.store.delete(name)
    repo.index = type(repo.index)()
    repo.refresh_index()
    ctx.finish()
    return RebuildResult(
        project_id=repo.project_id,
        packs_read=len({loc.pack_id for _d, loc in locations}) + len(damaged),
        chunks_indexed=len(repo.index),
        damaged_packs=damaged,
        chunks_salvaged=len(salvaged),
        quarantined=kept_as,
        notes=notes,
    )


def _salvage(
    repo: Repository, name: str, known: list[tuple[bytes, BlobLocation]], writer: PackWriter
) -> int:
    """Copy every chunk of a damaged pack that still verifies into `writer`; returns how many."""
    candidates = [(d, loc.offset, loc.length, loc.raw_length, loc.flags) for d, loc in known]
    with contextlib.suppress(ValueError, struct.error, OSError, EOFError):
        candidates += salvage_entries(repo.store, name, repo.codec)
    kept: set[bytes] = set()
    for digest, offset, length, raw_length, flags in candidates:
        if digest in kept:  # another candidate placed it already
            continue
        try:
            stored = repo.store.get_range(name, offset, length)
        except (ValueError, OSError, EOFError):
            continue
        digest = _verified_id(repo, digest, stored, raw_length, flags)
        if digest is None or digest in kept:
            continue
        writer.add(digest, stored, raw_length, flags)  # copied as sealed
        kept.add(digest)
    return len(kept)


def _verified_id(
    repo: Repository, digest: bytes, stored: bytes, raw_length: int, flags: int
) -> bytes | None:
    """The id of the chunk `stored` holds, once its bytes check against it: the id the header
    gives, else (a damaged header may have lost a bit of an id, not of the chunk) the hash of
    the chunk's own bytes, where the id is that hash (no cipher). None: not intact."""
    try:
        repo.codec.open_blob(digest, stored, flags, raw_length)
        return digest
    except (ValueError, EOFError):  # DamagedChunk included
        if repo.codec.encrypts:  # the id is the key to the blob: no other can be tried
            return None
    try:
        raw = decompress_blob(stored, flags, raw_length)
        if len(raw) != raw_length:
            return None
        own = repo.codec.chunk_id(raw)
        repo.codec.open_blob(own, stored, flags, raw_length)
    except (ValueError, EOFError, zstandard.ZstdError):
        return None
    return own
