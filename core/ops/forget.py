"""Applying a retention policy to a repository: what removal would free, and the removal.

The decisions come from `core.retention.evaluate` (pure). Here, under the project's
exclusive lock (the caller holds it: no backup is being written, none is being restored),
a backup the policy removes is first *soft-removed*: its metadata says `removed_at`, it is
no longer listed as a backup, but it is still complete and restorable, and `undelete` brings
it back. Only once its grace period has passed is it deleted (tombstone first, as `delete`),
and then one reclaim gives back the space of every backup deleted in this pass. A failed or
interrupted backup holds nothing restorable: it is deleted at once.

Crash safety is that of its parts: a soft removal is one metadata write (whole or not at
all); a deletion cut short is finished by the next writer (its tombstone); reclaim keeps every
chunk a backup needs reachable at every instant (docs/design.md, I1).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from core.errors import Damaged
from core.models import RESTORABLE, BackupMetadata, BackupType
from core.ops.reclaim import manifest_chunks
from core.repo.repository import Repository
from core.retention import Decision, newest_first

Log = Callable[[str, str, str | None], None]


def in_grace(meta: BackupMetadata, now: datetime) -> bool:
    """A soft-removed backup whose grace period has not passed (still restorable)."""
    return meta.removed_at is not None and (meta.purge_after is None or now < meta.purge_after)


def space_freed(repo: Repository, removed: list[BackupMetadata], kept: list[BackupMetadata]) -> int:
    """The stored bytes of the chunks that only `removed` backups use: what deleting them
    frees, at most (a pack shared with kept chunks may be left as it is, see reclaim's
    threshold). Raises Damaged when a manifest cannot be read (reclaim would refuse too)."""
    index = repo.refresh_index()
    kept_chunks: set[bytes] = set()
    for meta in kept:
        if meta.status in RESTORABLE:
            kept_chunks |= manifest_chunks(repo, meta.id, meta.checksum)
    only: set[bytes] = set()
    for meta in removed:
        if meta.status in RESTORABLE:
            only |= manifest_chunks(repo, meta.id, meta.checksum) - kept_chunks
    total = 0
    for digest in only:
        loc = index.get(digest)
        if loc is not None:
            total += loc.length
    return total


def soft_remove(
    repo: Repository, meta: BackupMetadata, decision: Decision, now: datetime, grace_hours: int
) -> BackupMetadata:
    """Mark a backup removed by retention (one metadata write): restorable until the grace
    period ends, then deleted by the next forget."""
    meta.removed_at = now
    meta.purge_after = now + timedelta(hours=grace_hours)
    meta.removed_reason = "; ".join(decision.reasons)[:200]
    repo.write_metadata(meta)
    return meta


def to_reinstate(
    live: list[BackupMetadata], expired: list[BackupMetadata]
) -> BackupMetadata | None:
    """The removed backup whose grace is over that must not be deleted: the newest completed
    backup of all, when it is one of them (the newer backups that made the policy remove it
    were deleted since). Retention never deletes the newest completed backup (I9): it is
    listed again instead."""
    ordinary = [
        m for m in [*live, *expired] if m.status in RESTORABLE and m.type != BackupType.CHECKPOINT
    ]
    newest = newest_first(ordinary)[:1]
    return newest[0] if newest and newest[0].removed_at is not None else None


def undelete_fields(meta: BackupMetadata) -> None:
    """A soft-removed backup listed again (the caller writes its metadata)."""
    meta.removed_at = meta.purge_after = meta.removed_reason = None


def purge(repo: Repository, backup_ids: list[str], log: Log) -> list[str]:
    """Delete backups for good (each as `delete` does: tombstone first); the reclaim that
    follows gives back their space. Returns the ids deleted."""
    done = []
    for backup_id in backup_ids:
        try:
            repo.delete_backup_files(backup_id)
        except Damaged as exc:
            log("WARNING", f"could not delete: {exc}", backup_id)
            continue
        done.append(backup_id)
    return done
