"""Giving space back: after a delete, drop or repack the packs whose chunks no backup needs.

Runs under the project's exclusive lock, so no backup is being written. Order for crash
safety: new packs, then the new index that lists them, then the old index files, then the
old packs; at any instant every chunk a backup needs is reachable through some index file.
"""

from __future__ import annotations

from . import manifest as mf
from .index import PREFIX, write_index
from .models import RESTORABLE, BackupStatus, DeleteResult
from .packs import BlobLocation, PackWriter, pack_name
from .progress import OperationContext
from .repository import Repository


def referenced_chunks(repo: Repository) -> set[bytes]:
    """Every chunk any remaining backup with a manifest needs."""
    needed: set[bytes] = set()
    metas, _bad = repo.list_metadata()
    for meta in metas:
        if meta.status not in RESTORABLE and meta.status != BackupStatus.VALIDATING:
            continue
        try:
            data = repo.read_manifest(meta.id)
        except Exception:
            continue
        for e in mf.iter_entries(data):
            if e.kind == mf.FILE:
                needed.update(bytes.fromhex(h) for h, _n in e.chunks)
    return needed


def reclaim(repo: Repository, result: DeleteResult, ctx: OperationContext) -> DeleteResult:
    ctx.set_phase("reclaiming")
    index = repo.refresh_index()
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
    for pack_id in sorted(obsolete) + orphans:
        repo.store.delete(pack_name(pack_id))
    repo.index.refresh(repo.store)

    freed = sum(on_disk.get(p, 0) for p in obsolete) + sum(on_disk[p] for p in orphans)
    result.bytes_reclaimed = max(0, freed - writer.bytes_written)
    result.packs_deleted = len(drop) + len(orphans)
    result.packs_rewritten = len(rewrite)
    ctx.finish()
    return result
