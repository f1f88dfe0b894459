"""Copying a backup from one repository to another (local to S3, S3 to local, any two):
only the chunks the target lacks travel, ids and metadata are kept, and a copy cut short
is finished by running it again.

Write order, as a backup's: the target's metadata says RUNNING first (under the target's
shared lock, so a dead copy reads as interrupted and recovery removes its manifest); every
chunk is read from the source checked against its hash, and stored as the source stores it
when the two repositories name and seal chunks alike, sealed again otherwise; each pack is
indexed as soon as it is durable (a kill loses at most the packs being written, and a rerun
sends nothing twice); the manifest next, the same bytes (so its checksum in the metadata
still holds); the metadata, COMPLETED, last.
Nothing is reported copied before the target's copy verifies.

Between repositories whose chunk ids differ (one encrypted, or two under different keys:
chunk ids are keyed, docs/design.md §6), every chunk is read and named again by the target's
`chunk_id`, and the manifest is written anew with the target's ids (so its checksum, in the
copied metadata, is the new manifest's); the chunks keep the source's boundaries.
"""

from __future__ import annotations

import contextlib

from core.errors import Cancelled, Conflict, Damaged
from core.models import RESTORABLE, BackupMetadata, BackupStatus, CopiedBackup
from core.ops.progress import OperationContext
from core.pipeline import Pipeline
from core.repo import manifest as mf
from core.repo.packs import BlobLocation
from core.repo.repository import Repository
from core.storage import Buffer
from core.validator import load_checked_manifest, verify_backup

#: Threads sealing chunks for a target whose keys differ (compression and encryption are
#: the copy's work then; uploads have threads of their own, `PackWriter`).
SEALERS = 3


def needs_copy(dst: Repository, backup_id: str) -> bool:
    """False when the target already holds this backup whole (COMPLETED, or VERIFIED)."""
    try:
        return dst.read_metadata(backup_id).status not in RESTORABLE
    except Exception:  # absent, damaged, interrupted: (re)copy it
        return True


def copy_backup(
    src: Repository, dst: Repository, meta: BackupMetadata, ctx: OperationContext
) -> CopiedBackup:
    """Copy one COMPLETED backup of `src` into `dst` (both locked by the caller)."""
    if meta.status not in RESTORABLE:
        raise Conflict(f"backup {meta.id} is {meta.status.value}: only a completed one is copied")
    manifest = load_checked_manifest(src, meta)  # read once: these bytes are what is copied
    try:
        entries = list(mf.iter_entries(manifest))
    except mf.ManifestError as exc:
        raise Damaged(f"backup {meta.id}: {exc}") from exc
    src.refresh_index()
    sizes = _chunks(entries)
    dst.refresh_index()
    rekey = src.codec.chunk_id(_PROBE) != dst.codec.chunk_id(_PROBE)
    missing = list(sizes) if rekey else [d for d in sizes if d not in dst.index]
    ctx.set_phase("copying", bytes_total=sum(sizes[d] for d in missing))

    running = meta.model_copy(update={"status": BackupStatus.RUNNING, "error_message": None})
    dst.write_metadata(running)
    try:
        return _copy_chunks_then_manifest(src, dst, meta, ctx, manifest, entries, sizes, missing)
    except BaseException as exc:
        # as a backup that fails (docs/design.md §2): FAILED with why, its manifest removed;
        # left RUNNING, it read "interrupted: the process running it stopped" in the target
        cancelled = isinstance(exc, Cancelled | KeyboardInterrupt)
        why = "cancelled" if cancelled else (str(exc).splitlines() or [type(exc).__name__])[0]
        failed = running.model_copy(
            update={
                "status": BackupStatus.FAILED,
                "error_message": f"copy failed: {why}"[:1000],
                "completed_at": ctx.clock(),
            }
        )
        with contextlib.suppress(Exception):
            dst.store.delete(dst.manifest_name(meta.id))
        with contextlib.suppress(Exception):  # a full or unreachable target: recovery's then
            dst.write_metadata(failed)
        raise


def _copy_chunks_then_manifest(
    src: Repository,
    dst: Repository,
    meta: BackupMetadata,
    ctx: OperationContext,
    manifest: bytes,
    entries: list[mf.Entry],
    sizes: dict[bytes, int],
    missing: list[bytes],
) -> CopiedBackup:
    """The chunks the target lacks, then the manifest, its verify, the metadata COMPLETED."""
    rekey = src.codec.chunk_id(_PROBE) != dst.codec.chunk_id(_PROBE)

    def indexed(_pack_id: str, locations: list[tuple[bytes, BlobLocation]]) -> None:
        dst.write_index(locations)
        for digest, loc in locations:
            dst.index.add(digest, loc)

    writer = dst.pack_writer(indexed)
    sent = 0
    renamed: dict[bytes, bytes] = {}
    added: set[bytes] = set()

    def seal_and_add(digest: bytes, raw: Buffer) -> None:
        stored, flags = dst.codec.seal_blob(digest, raw)
        writer.add(digest, stored, len(raw), flags)

    try:
        with Pipeline(SEALERS, name="nexus-copy", on_failure=ctx.cancel.set) as pipeline:
            # a pack's neighbouring chunks in one read; each checked against its id
            for digest, (raw, sealed, loc) in zip(missing, src.read_sealed(missing), strict=True):
                ctx.check()
                ctx.advance(nbytes=len(raw))
                if rekey:
                    renamed[digest] = new = dst.codec.chunk_id(raw)
                    if new in dst.index or new in added:
                        continue
                    digest = new
                added.add(digest)
                sent += len(raw)
                if not rekey:  # the same ids and keys: stored as the source stores it
                    writer.add(digest, sealed, len(raw), loc.flags)
                elif not pipeline.submit(seal_and_add, digest, raw):
                    break
        writer.flush()
    except BaseException:
        writer.abort()
        raise
    if rekey:
        manifest, checksum = _renamed_manifest(manifest, entries, renamed)
        meta = meta.model_copy(update={"checksum": checksum})
    dst.write_manifest(meta.id, manifest)

    ctx.set_phase("verifying")
    check = verify_backup(dst, meta, quick=False, ctx=ctx)
    if not check.ok:
        reason = "; ".join(check.errors[:3]) or "damaged files in the copy"
        raise Damaged(f"backup {meta.id}: the copy does not verify ({reason})")
    dst.write_metadata(meta)
    dst.write_verify(check)
    chunks_sent = len(added)
    return CopiedBackup(
        backup_id=meta.id,
        chunks_sent=chunks_sent,
        chunks_present=len(sizes) - chunks_sent,
        bytes_sent=sent,
        packs_written=writer.packs_written,
    )


def _chunks(entries: list[mf.Entry]) -> dict[bytes, int]:
    """Every distinct chunk the backup's files are made of and its size, in the order the
    files use them (so the target's packs hold a file's chunks together, as a backup's do)."""
    seen: dict[bytes, int] = {}
    for e in entries:
        if e.kind == mf.FILE:
            for h, n in e.chunks:
                seen.setdefault(bytes.fromhex(h), n)
    return seen


#: Any bytes: two codecs name chunks alike when they name these alike.
_PROBE = b"nexus-backup chunk id probe"


def _renamed_manifest(
    manifest: bytes, entries: list[mf.Entry], renamed: dict[bytes, bytes]
) -> tuple[bytes, str]:
    """The manifest again, its chunk ids replaced by the target's: its frame and checksum."""
    header = {k: v for k, v in mf.read_header(manifest).items() if k != "nexus_manifest"}
    out = mf.ManifestWriter(header)
    for e in entries:
        if e.kind == mf.FILE and e.chunks:
            e.chunks = [(renamed[bytes.fromhex(h)].hex(), n) for h, n in e.chunks]
        out.add(e)
    return out.finish()
