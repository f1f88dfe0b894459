"""Giving space back: after a delete, drop or repack the packs whose chunks no backup needs.

Runs under the project's exclusive lock, so no backup is being written. Order for crash
safety: new packs, then the new index that lists them, then the old index files, then the
old packs; at any instant every chunk a backup needs is reachable through some index file.
"""

from __future__ import annotations

import contextlib
import struct

from . import locks
from . import manifest as mf
from .errors import Damaged
from .index import PREFIX, IndexFormatError, decode_index, write_index
from .models import RESTORABLE, BackupStatus, DeleteResult
from .packs import BlobLocation, PackWriter, pack_name
from .progress import OperationContext
from .repository import Repository


def referenced_chunks(repo: Repository) -> set[bytes]:
    """Every chunk any remaining backup with a manifest needs.

    Raises Damaged when a backup's metadata or manifest cannot be read: what it needs is then
    unknown, and taking its chunks for garbage would destroy what a repair could save."""
    needed: set[bytes] = set()
    metas, bad = repo.list_metadata()
    if bad:
        raise Damaged(
            f"metadata.json of backup {bad[0]} is missing or damaged"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            + ": no space is reclaimed until it is repaired or the backup deleted"
        )
    for meta in metas:
        if meta.status not in RESTORABLE and meta.status != BackupStatus.VALIDATING:
            continue
        try:
            entries = list(mf.iter_entries(repo.read_manifest(meta.id)))
        except Damaged as exc:
            raise Damaged(f"{exc}: no space is reclaimed while a backup is damaged") from exc
        for e in entries:
            if e.kind == mf.FILE:
                needed.update(bytes.fromhex(h) for h, _n in e.chunks)
    return needed


def reclaim(repo: Repository, result: DeleteResult, ctx: OperationContext) -> DeleteResult:
    ctx.set_phase("reclaiming")
    index = repo.refresh_index()
    if index.damaged:
        # The packs only a damaged index file names would look unreferenced and be deleted,
        # the damaged file with them: what rebuild-index could recover would be lost.
        raise Damaged(
            f"{len(index.damaged)} index files are damaged: no space is reclaimed until the "
            "index is rebuilt from the packs"
        )
    needed = referenced_chunks(repo)
    by_pack = index.packs()
    on_disk = {o.name.rsplit("/", 1)[-1]: o.size for o in repo.store.list("packs/")}

    drop: list[str] = []
    rewrite: list[str] = []
    for pack_id, blobs in by_pack.items():
        used = [d for d, _loc in blobs if d in needed]
        if not used:
            drop.append(pack_id)
        elif len(used) < len(blobs):
            rewrite.append(pack_id)
    orphans = [p for p in on_disk if p not in by_pack]  # written by a run that died

    if not drop and not rewrite and not orphans:
        ctx.finish()
        return result

    new_locations: list[tuple[bytes, BlobLocation]] = []
    writer = PackWriter(repo.store, lambda _p, locs: new_locations.extend(locs), repo.pack_size)
    for pack_id in rewrite:
        ctx.check()
        data = repo.store.get(pack_name(pack_id))
        for digest, loc in by_pack[pack_id]:
            if digest in needed and index.get(digest) == loc:
                writer.add(
                    digest, data[loc.offset : loc.offset + loc.length], loc.raw_length, loc.flags
                )
    writer.flush()

    obsolete = set(drop) | set(rewrite)
    keep: dict[bytes, BlobLocation] = {}
    for digest, loc in index.entries.items():
        if loc.pack_id not in obsolete and digest in needed:
            keep[digest] = loc
    for digest, loc in new_locations:
        keep.setdefault(digest, loc)
    old_index_files = [o.name for o in repo.store.list(PREFIX)]
    new_name = write_index(repo.store, list(keep.items()))
    for name in old_index_files:
        if name != new_name:
            repo.store.delete(name)
    # A rewritten pack can be byte-identical to one an interrupted reclaim left unindexed
    # (a pack is named by the hash of its bytes): never delete what this run just wrote.
    written = {loc.pack_id for _d, loc in new_locations}
    for pack_id in sorted(obsolete) + orphans:
        if pack_id not in written:
            repo.store.delete(pack_name(pack_id))
    repo.index.refresh(repo.store)

    freed = sum(on_disk.get(p, 0) for p in obsolete) + sum(on_disk[p] for p in orphans)
    result.bytes_reclaimed = max(0, freed - writer.bytes_written)
    result.packs_deleted = len(drop) + len(orphans)
    result.packs_rewritten = len(rewrite)
    ctx.finish()
    return result


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
                data = repo.store.get(obj.name)
                indexed.update(pack_name(loc.pack_id) for _d, loc in decode_index(data))
            except (IndexFormatError, struct.error, OSError):
                return  # cannot tell what is indexed: keep everything
        for name in names:
            if name not in indexed:
                with contextlib.suppress(OSError):
                    repo.store.delete(name)
    finally:
        lock.release()
