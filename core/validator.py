"""Integrity: checksums, verification of stored backups, validation of restore points.

`verify` re-reads every chunk a backup needs (each pack read once), checks each chunk's
BLAKE3 hash and the manifest's checksum, and names every damaged file; `quick` only checks
that every chunk is indexed and its pack present and long enough.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import blake3

from core.errors import Conflict, Damaged
from core.models import RESTORABLE, BackupMetadata, DamagedFile, VerifyResult
from core.ops.progress import OperationContext
from core.repo import manifest as mf
from core.repo.codec import DamagedChunk
from core.repo.manifest import Entry
from core.repo.packs import BlobLocation, pack_name, pack_objects
from core.repo.repository import READ_BATCH, Repository

MAX_DAMAGED = 10000


def file_checksum(path: Path | str) -> str:
    """`blake3:<hex>` of a file's content, as the manifest records it."""
    h = blake3.blake3()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(4 * 1024 * 1024):
            h.update(block)
    return "blake3:" + h.hexdigest()


def load_checked_manifest(repo: Repository, meta: BackupMetadata) -> bytes:
    """The manifest, after checking it against the checksum in metadata.json."""
    data = repo.read_manifest(meta.id)
    if meta.checksum and mf.checksum(data) != meta.checksum:
        raise Damaged(f"backup {meta.id}: manifest does not match its checksum")
    return data


def validate_restore_point(repo: Repository, meta: BackupMetadata) -> tuple[dict, list[Entry]]:
    """Everything a restore needs before it writes a byte: the backup completed, its
    manifest intact, every chunk indexed. Returns the manifest's header and entries, read
    once from the manifest checked against its checksum."""
    if meta.status not in RESTORABLE:
        raise Conflict(f"backup {meta.id} is {meta.status.value}, not completed: cannot restore it")
    data = load_checked_manifest(repo, meta)
    try:
        return mf.read_header(data), list(mf.iter_entries(data))
    except mf.ManifestError as exc:
        raise Damaged(f"backup {meta.id}: {exc}") from exc


def missing_chunk_files(repo: Repository, entries: list[Entry]) -> list[str]:
    index = repo.refresh_index()
    return [
        e.display_path
        for e in entries
        if e.kind == mf.FILE and any(bytes.fromhex(h) not in index for h, _n in e.chunks)
    ]


def verify_backup(
    repo: Repository, meta: BackupMetadata, *, quick: bool, ctx: OperationContext
) -> VerifyResult:
    started = time.monotonic()
    result = VerifyResult(
        project_id=meta.project_id,
        backup_id=meta.id,
        quick=quick,
        ok=True,
        checked_at=ctx.clock(),
    )

    def damage(path: str, reason: str) -> None:
        result.ok = False
        if len(result.damaged_files) < MAX_DAMAGED:
            result.damaged_files.append(DamagedFile(path=path, reason=reason))

    ctx.set_phase("verifying")
    try:
        data = repo.read_manifest(meta.id)
        if meta.checksum and mf.checksum(data) != meta.checksum:
            result.checksum_ok = False
            result.ok = False
            result.errors.append("manifest does not match the backup's checksum")
        entries = list(mf.iter_entries(data))
    except (Damaged, mf.ManifestError) as exc:
        result.ok = False
        result.checksum_ok = False
        result.errors.append(str(exc))
        result.duration_seconds = round(time.monotonic() - started, 3)
        return result

    index = repo.refresh_index()
    for name, why in index.damaged.items():
        result.errors.append(f"index file {name} is damaged: {why}")

    # chunk -> the files that need it; pack -> its chunks
    users: dict[bytes, list[str]] = defaultdict(list)
    for e in entries:
        if e.kind != mf.FILE:
            continue
        result.files_checked += 1
        for h, _n in e.chunks:
            users[bytes.fromhex(h)].append(e.display_path)
    bad_chunks: dict[bytes, str] = {}
    by_pack: dict[str, list[bytes]] = defaultdict(list)
    for digest in users:
        loc = index.get(digest)
        if loc is None:
            bad_chunks[digest] = "chunk missing from the index"
        else:
            by_pack[loc.pack_id].append(digest)

    pack_sizes = {o.name: o.size for o in pack_objects(repo.store).values()}
    total = sum(index.get(d).length for ds in by_pack.values() for d in ds)  # type: ignore[union-attr]
    ctx.set_phase("verifying", files_total=len(by_pack), bytes_total=total)
    # in pack order, READ_BATCH bytes of neighbouring chunks per read (one request on a remote
    # store), never a whole pack in memory (16 MiB buffers would fragment the heap)
    packs = repo.store.reader()
    try:
        for pack_id, digests in by_pack.items():
            ctx.check()
            name = pack_name(pack_id)
            size = pack_sizes.get(name)
            if size is None:
                for d in digests:
                    bad_chunks[d] = f"pack {pack_id[:16]} is missing"
                continue
            located = sorted(((index.get(d), d) for d in digests), key=lambda x: x[0].offset)  # type: ignore[union-attr]
            readable = []
            for loc, d in located:
                assert loc is not None
                result.chunks_checked += 1
                if loc.offset + loc.length > size:
                    bad_chunks[d] = f"pack {pack_id[:16]} is truncated"
                elif not quick:
                    readable.append((loc, d))
            for batch in _batches(readable):
                try:
                    blobs = packs.read_ranges(name, [(loc.offset, loc.length) for loc, _d in batch])
                except (OSError, EOFError) as exc:
                    for _loc, d in batch:
                        bad_chunks[d] = f"pack {pack_id[:16]} unreadable: {exc}"
                    continue
                for (loc, d), blob in zip(batch, blobs, strict=True):
                    try:
                        repo.codec.open_blob(d, blob, loc.flags, loc.raw_length, pack_id=pack_id)
                    except DamagedChunk as exc:
                        bad_chunks[d] = str(exc)
                    result.bytes_checked += loc.length
                    ctx.advance(nbytes=loc.length)
                del blobs
            ctx.advance(files=1)
    finally:
        packs.close()

    damaged: dict[str, str] = {}
    for d, reason in bad_chunks.items():
        for path in users[d]:
            damaged.setdefault(path, reason)
    for path in sorted(damaged):
        damage(path, damaged[path])
    result.duration_seconds = round(time.monotonic() - started, 3)
    ctx.finish()
    return result


Located = list[tuple[BlobLocation, bytes]]


def _batches(located: Located) -> Iterator[Located]:
    """Runs of a pack's chunks of at most READ_BATCH bytes, in offset order."""
    batch: Located = []
    size = 0
    for loc, d in located:
        if batch and size + loc.length > READ_BATCH:
            yield batch
            batch, size = [], 0
        batch.append((loc, d))
        size += loc.length
    if batch:
        yield batch
