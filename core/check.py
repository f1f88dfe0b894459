"""Whole-repository checks: the index against the packs' own headers, every backup verified,
and the index rebuilt from the packs alone when index files are lost or damaged."""

from __future__ import annotations

import struct
import time
from datetime import UTC, datetime

from .index import PREFIX, rebuild_from_packs, write_index
from .models import RESTORABLE, CheckResult, RebuildResult
from .packs import read_pack_entries
from .progress import OperationContext
from .repository import Repository
from .validator import verify_backup


def check_repository(repo: Repository, *, read_data: bool, ctx: OperationContext) -> CheckResult:
    started = time.monotonic()
    result = CheckResult(
        project_id=repo.project_id, ok=True, read_data=read_data, checked_at=datetime.now(UTC)
    )
    index = repo.refresh_index()
    for name, why in index.damaged.items():
        result.errors.append(f"index file {name} is damaged: {why}")
    on_disk = {o.name.rsplit("/", 1)[-1]: o for o in repo.store.list("packs/")}
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
                for h, off, length, _r, _f in read_pack_entries(repo.store, obj.name)
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
        result.errors.append(f"backup {backup_id}: metadata.json is missing or damaged")
    for meta in sorted(metas, key=lambda m: m.created_at):
        if meta.status not in RESTORABLE:
            continue
        verified = verify_backup(repo, meta, quick=not read_data, ctx=ctx)
        result.backups.append(verified)
        if not verified.ok:
            names = ", ".join(d.path for d in verified.damaged_files[:5])
            result.errors.append(f"backup {meta.id} is damaged" + (f": {names}" if names else ""))
    result.ok = not result.errors
    result.duration_seconds = round(time.monotonic() - started, 3)
    ctx.finish()
    return result


def rebuild_index(repo: Repository, ctx: OperationContext) -> RebuildResult:
    """Replace every index file by one built from the packs' headers (exclusive lock held)."""
    ctx.set_phase("rebuilding")
    locations, damaged = rebuild_from_packs(repo.store)
    old = [o.name for o in repo.store.list(PREFIX)]
    new = write_index(repo.store, locations)
    for name in old:
        if name != new:
            repo.store.delete(name)
    repo.index = type(repo.index)()
    repo.refresh_index()
    ctx.finish()
    return RebuildResult(
        project_id=repo.project_id,
        packs_read=len({loc.pack_id for _d, loc in locations}) + len(damaged),
        chunks_indexed=len(repo.index),
        damaged_packs=damaged,
    )
