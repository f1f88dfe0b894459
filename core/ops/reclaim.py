"""Giving space back: after a delete, drop or repack the packs whose chunks no backup needs.

Deletion is proven, never assumed (docs/design.md, invariant 1). Before anything is deleted,
`prove_unreferenced` reads every index file, every backup's metadata and manifest (checked
against its checksum) and the header of every pack no index names; if any of them cannot be
read, or a chunk a backup needs is not in the index, nothing is deleted. A pack is deleted only
when each of its chunks is unneeded, or needed and also held by a pack that stays. A pack
partly used is repacked only when its unused share exceeds a threshold (restic's
`--max-unused`, 5 % by default), so that retention over a large repository does not copy
every pack for a few unneeded chunks.

A needed chunk can be stored twice (two backups that ran at once). The index serves one copy;
before a pack holding the other is deleted or repacked, the served copy is read and checked.
If it is damaged, the intact copy about to go is copied into a new pack and served from there
instead (a repair); if neither is intact, nothing is deleted.

Runs under the project's exclusive lock, so no backup is being written. Order for crash
safety: new packs, then the new index that lists them, then the old index files, then the
old packs; at any instant every chunk a backup needs is reachable through some index file.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field

from core.errors import Damaged, NexusError, describe_os_error, storage_full
from core.models import IN_PROGRESS, RESTORABLE, DeleteResult
from core.ops.progress import OperationContext
from core.repo import locks
from core.repo import manifest as mf
from core.repo.codec import DamagedChunk, DamagedObject
from core.repo.index import PREFIX, decode_index, read_index_file
from core.repo.packs import BlobLocation, pack_name, pack_objects, read_pack_entries
from core.repo.repository import Repository


class Unproven(Damaged):
    """Reclaim cannot prove which data is unreferenced: nothing was deleted."""


def _refuse(why: str) -> Unproven:
    return Unproven(f"{why}: no space is reclaimed, nothing was deleted")


def referenced_chunks(repo: Repository) -> set[bytes]:
    """Every chunk a backup that is completed, in progress or of unknown state may need.

    Raises Unproven when what some backup needs cannot be known: metadata missing or damaged
    (and no delete of it under way), a backup still marked in progress (its manifest is not
    written yet), a manifest missing, damaged, of a newer format or not matching its
    checksum."""
    needed: set[bytes] = set()
    metas, bad = repo.list_metadata()
    bad = [b for b in bad if not repo.empty_backup_dir(b)]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise _refuse(
            f"metadata.json of backup {bad[0]}{more} is missing or damaged; repair it or "
            "delete the backup on purpose"
        )
    for meta in metas:
        if meta.status in IN_PROGRESS:
            raise _refuse(f"backup {meta.id} is still marked {meta.status.value}")
        if meta.status not in RESTORABLE:
            continue
        needed |= manifest_chunks(repo, meta.id, meta.checksum)
    return needed


def manifest_chunks(repo: Repository, backup_id: str, checksum: str | None) -> set[bytes]:
    """The chunks a backup's manifest names, the manifest checked against its checksum
    (Unproven when it cannot be read or does not match)."""
    chunks: set[bytes] = set()
    try:
        data = repo.read_manifest(backup_id)
        mf.read_header(data)
        records = mf.Records(data)
        for _path, obj, _line, _s, _e in records:
            if obj.get("k") == mf.FILE:
                chunks.update(bytes.fromhex(h) for h, _n in obj.get("ch", ()))
    except (Damaged, ValueError, TypeError) as exc:
        raise _refuse(f"backup {backup_id}: {exc}") from exc
    if checksum and records.checksum != checksum:
        raise _refuse(f"backup {backup_id}: manifest does not match its checksum")
    return chunks


@dataclass
class Proof:
    """What reclaim may do, and why each deleted pack holds nothing needed."""

    needed: set[bytes]
    by_pack: dict[str, list[tuple[bytes, BlobLocation]]]
    sizes: dict[str, int]
    drop: list[str] = field(default_factory=list)  # packs whose every chunk is unneeded
    rewrite: list[str] = field(default_factory=list)  # packs partly needed: repacked
    orphans: list[str] = field(default_factory=list)  # unindexed packs, proven redundant
    #: Needed chunks whose served copy is damaged: the intact copy, in a pack that goes, that
    #: is copied into a new pack and served instead.
    repair: dict[bytes, BlobLocation] = field(default_factory=dict)


#: The share of a pack's blob bytes that may be unused before reclaim repacks it (restic's
#: --max-unused default): repacking a pack for a few unused chunks costs a whole pack's copy.
MAX_UNUSED = 0.05


def prove_unreferenced(repo: Repository, max_unused: float = MAX_UNUSED) -> Proof:
    """What may be dropped (packs no needed chunk is served from), repacked (packs whose
    unused share exceeds `max_unused`; 0 repacks every partly used pack) and deleted as
    orphans, proven as the module docstring says (Unproven otherwise)."""
    index = repo.refresh_index()
    if index.damaged:
        names = ", ".join(sorted(index.damaged)[:3])
        raise _refuse(f"index files are damaged ({names}); run rebuild-index")
    needed = referenced_chunks(repo)
    sizes = {pack_id: o.size for pack_id, o in pack_objects(repo.store).items()}
    by_pack = index.packs()
    missing = [d for d in needed if d not in index]
    if missing:
        raise _refuse(
            f"{len(missing)} chunks that backups need are not in the index (an index file may be "
            "lost); run rebuild-index"
        )
    absent = sorted({index.get(d).pack_id for d in needed} - set(sizes))  # type: ignore[union-attr]
    if absent:
        raise _refuse(f"pack {absent[0][:16]} that backups need is missing; run check")
    proof = Proof(needed, by_pack, sizes)
    for pack_id, blobs in by_pack.items():
        total = sum(loc.length for _d, loc in blobs)
        used = sum(loc.length for d, loc in blobs if d in needed and index.get(d) == loc)
        if not used:
            proof.drop.append(pack_id)
        elif total and (total - used) / total > max_unused:
            proof.rewrite.append(pack_id)
    # Nothing damaged is deleted by an automatic step: a pack to delete or repack must still
    # show its own header (rebuild-index salvages a damaged one and sets it aside).
    going: dict[str, list[tuple[bytes, int, int, int, int]]] = {}
    for pack_id in proof.drop + proof.rewrite:
        try:
            going[pack_id] = read_pack_entries(repo.store, pack_name(pack_id), repo.codec)
        except (ValueError, struct.error, OSError, EOFError) as exc:
            raise _refuse(f"pack {pack_id[:16]} is damaged ({exc}); run rebuild-index") from exc
    # A pack no index names was left by a run that died, or its index file was lost: it is
    # deleted only if its own header says it holds nothing that is not served elsewhere.
    for pack_id in sorted(set(sizes) - set(by_pack)):
        try:
            going[pack_id] = read_pack_entries(repo.store, pack_name(pack_id), repo.codec)
        except (ValueError, struct.error, OSError, EOFError) as exc:
            raise _refuse(
                f"pack {pack_id[:16]} is not in the index and its header cannot be read ({exc}); "
                "run rebuild-index"
            ) from exc
        # Every needed chunk is in the index, at a pack that exists (checked above), and the
        # index never points into this pack: whatever its header lists is served elsewhere.
        proof.orphans.append(pack_id)
    proof.repair = _served_copies_checked(repo, _spare_copies(repo, needed, going))
    return proof


def _spare_copies(
    repo: Repository, needed: set[bytes], going: dict[str, list[tuple[bytes, int, int, int, int]]]
) -> dict[bytes, list[BlobLocation]]:
    """The copies of needed chunks, in packs about to be deleted or repacked, that the index
    does not serve (a repack copies only served ones): each goes with its pack."""
    spare: dict[bytes, list[BlobLocation]] = {}
    for pack_id, entries in going.items():
        for digest, offset, length, raw_length, flags in entries:
            loc = BlobLocation(pack_id, offset, length, raw_length, flags)
            if digest in needed and repo.index.get(digest) != loc:
                spare.setdefault(digest, []).append(loc)
    return spare


def _served_copies_checked(
    repo: Repository, spare: dict[bytes, list[BlobLocation]]
) -> dict[bytes, BlobLocation]:
    """Read the served copy of each chunk that has a spare copy about to go: the spare copy
    to keep (in place of the served one) for each whose served copy is damaged. Unproven
    when a chunk would be left with no intact copy."""
    served: dict[str, list[tuple[bytes, BlobLocation]]] = {}
    for digest in spare:
        loc = repo.index.get(digest)
        assert loc is not None  # every needed chunk is indexed (checked by the caller)
        served.setdefault(loc.pack_id, []).append((digest, loc))
    repair: dict[bytes, BlobLocation] = {}
    for pack_id, chunks in served.items():
        for digest, loc in _damaged(repo, pack_id, sorted(chunks, key=lambda c: c[1].offset)):
            intact = next((s for s in spare[digest] if _intact(repo, digest, s)), None)
            if intact is None:
                raise _refuse(
                    f"chunk {digest.hex()[:16]} is damaged in pack {loc.pack_id[:16]} and in "
                    "every other copy; run check"
                )
            repair[digest] = intact
    return repair


def _damaged(
    repo: Repository, pack_id: str, chunks: list[tuple[bytes, BlobLocation]]
) -> list[tuple[bytes, BlobLocation]]:
    """Those of `chunks` (all in one pack) whose stored copy does not open or fails its hash."""
    try:
        stored = repo.store.read_ranges(
            pack_name(pack_id), [(loc.offset, loc.length) for _d, loc in chunks]
        )
    except (OSError, EOFError):  # a pack cut short: check each chunk alone
        return [(d, loc) for d, loc in chunks if not _intact(repo, d, loc)]
    return [
        (d, loc) for (d, loc), s in zip(chunks, stored, strict=True) if not _opens(repo, d, s, loc)
    ]


def _intact(repo: Repository, digest: bytes, loc: BlobLocation) -> bool:
    try:
        stored = repo.store.get_range(pack_name(loc.pack_id), loc.offset, loc.length)
    except (OSError, EOFError):
        return False
    return _opens(repo, digest, stored, loc)


def _opens(repo: Repository, digest: bytes, stored: bytes, loc: BlobLocation) -> bool:
    try:
        repo.codec.open_blob(digest, stored, loc.flags, loc.raw_length, pack_id=loc.pack_id)
    except DamagedChunk:
        return False
    return True


def reclaim(
    repo: Repository,
    result: DeleteResult,
    ctx: OperationContext,
    max_unused: float = MAX_UNUSED,
) -> DeleteResult:
    """Drop the packs no backup needs and repack those whose unused share exceeds
    `max_unused`; a pack left as it is keeps its unneeded chunks indexed (they are still
    there: a later backup may reuse them, and the next reclaim counts them as unused)."""
    ctx.set_phase("reclaiming")
    proof = prove_unreferenced(repo, max_unused)
    index, needed = repo.index, proof.needed
    if not proof.drop and not proof.rewrite and not proof.orphans:
        ctx.finish()
        return result

    new_locations: list[tuple[bytes, BlobLocation]] = []
    writer = repo.pack_writer(lambda _p, locs: new_locations.extend(locs))
    try:
        for pack_id in proof.rewrite:
            ctx.check()
            data = repo.store.get(pack_name(pack_id))
            for digest, loc in proof.by_pack[pack_id]:
                if digest in needed and index.get(digest) == loc and digest not in proof.repair:
                    stored = data[loc.offset : loc.offset + loc.length]
                    _check_blob(repo, digest, stored, loc)
                    writer.add(digest, stored, loc.raw_length, loc.flags)  # copied as sealed
        for digest, loc in proof.repair.items():
            stored = repo.store.get_range(pack_name(loc.pack_id), loc.offset, loc.length)
            _check_blob(repo, digest, stored, loc)
            writer.add(digest, stored, loc.raw_length, loc.flags)
        writer.flush()
    except BaseException:
        writer.abort()
        raise

    obsolete = set(proof.drop) | set(proof.rewrite)
    keep: dict[bytes, BlobLocation] = {}
    for digest, loc in index.entries.items():
        # a pack that stays keeps its entries, unneeded ones included (never one of a pack
        # that is missing: a later backup would dedup against a chunk that is not there)
        if loc.pack_id not in obsolete and loc.pack_id in proof.sizes:
            keep[digest] = loc
    for digest, loc in new_locations:
        if digest in proof.repair:
            keep[digest] = loc  # served from the intact copy, never the damaged one again
        else:
            keep.setdefault(digest, loc)
    if any(d not in keep for d in needed):  # the proof above makes this unreachable
        raise _refuse("a needed chunk would be left without a pack")
    old_index_files = [o.name for o in repo.store.list(PREFIX)]
    new_name = repo.write_index(list(keep.items()))
    for name in old_index_files:
        if name != new_name:
            repo.store.delete(name)
    # A rewritten pack can be byte-identical to one an interrupted reclaim left unindexed
    # (a pack is named by the hash of its bytes): never delete what this run just wrote.
    written = {loc.pack_id for _d, loc in new_locations}
    for pack_id in sorted(obsolete) + proof.orphans:
        if pack_id not in written:
            repo.store.delete(pack_name(pack_id))
    repo.refresh_index()

    freed = sum(proof.sizes.get(p, 0) for p in obsolete) + sum(
        proof.sizes[p] for p in proof.orphans
    )
    result.bytes_reclaimed = max(0, freed - writer.bytes_written)
    result.packs_deleted = len(proof.drop) + len(proof.orphans)
    result.packs_rewritten = len(proof.rewrite)
    result.chunks_repaired = len(proof.repair)
    ctx.finish()
    return result


#: Why a reclaim stopped on a full disk: reclaim writes its new packs and index before it
#: deletes anything (I1), so what it could not free is still stored, and still needed or
#: not; the next reclaim proves it again from scratch.
FULL_DISK = (
    "no space left on device while reclaiming: nothing was lost (what could not be freed is"
    " still stored); the next delete or forget reclaims it once there is space"
)


def why_stopped(exc: OSError | NexusError) -> str:
    """A reclaim's failure as the one line every face shows (`reclaim_refused`): a full
    disk says that nothing was lost and what to run, never a raw errno."""
    if storage_full(exc):
        return FULL_DISK
    return describe_os_error(exc, "reclaim") if isinstance(exc, OSError) else str(exc)


def _check_blob(repo: Repository, digest: bytes, stored: bytes, loc: BlobLocation) -> None:
    """A needed chunk is copied into a new pack only when it is intact: otherwise its old pack
    (the only copy) would be deleted after the copy."""
    try:
        repo.codec.open_blob(digest, stored, loc.flags, loc.raw_length, pack_id=loc.pack_id)
    except DamagedChunk as exc:
        raise _refuse(str(exc)) from exc


def drop_unindexed_packs(repo: Repository, names: list[str]) -> None:
    """Remove the packs a failed run stored, unless an index file names them (another run may
    have stored a byte-identical pack, same name, and indexed it). Under a brief exclusive
    lock, so that no run is between storing a pack and indexing it; when the project is busy
    the packs stay, orphans for the next reclaim."""
    lock = locks.try_acquire_exclusive(repo.store, "cleanup")
    if lock is None:
        return
    try:
        indexed: set[str] = set()
        for obj in repo.store.list(PREFIX):
            try:
                data = read_index_file(repo.store, repo.codec, obj.name)
                indexed.update(pack_name(loc.pack_id) for _d, loc in decode_index(data))
            except (DamagedObject, struct.error, OSError):
                return  # cannot tell what is indexed: keep everything
        for name in names:
            if name not in indexed:
                with contextlib.suppress(OSError):
                    repo.store.delete(name)
    finally:
        lock.release()
