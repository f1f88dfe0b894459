"""Integrity: checksums, verification of stored backups, validation of restore points.

`verify` re-reads every chunk a backup needs (each pack read once), checks each chunk's
BLAKE3 hash and the manifest's checksum, and names every damaged file; `quick` only checks
that every chunk is indexed and its pack present and long enough.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3

from core.errors import Conflict, Damaged
from core.models import RESTORABLE, BackupMetadata, DamagedFile, VerifyResult
from core.ops.progress import OperationContext
from core.pipeline import Pipeline
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


def validate_restore_point(
    repo: Repository, meta: BackupMetadata, each: Callable[[Entry], Entry] | None = None
) -> tuple[dict, list[Entry]]:
    """Everything a restore needs before it writes a byte: the backup completed, its
    manifest intact, every chunk indexed. Returns the manifest's header and entries, read
    once from the manifest checked against its checksum; `each`, given, is applied to every
    entry as it is read (a restore drops what it never uses before the next is decoded)."""
    if meta.status not in RESTORABLE:
        raise Conflict(f"backup {meta.id} is {meta.status.value}, not completed: cannot restore it")
    data = load_checked_manifest(repo, meta)
    try:
        entries = mf.iter_entries(data)
        return mf.read_header(data), list(entries if each is None else map(each, entries))
    except mf.ManifestError as exc:
        raise Damaged(f"backup {meta.id}: {exc}") from exc


def missing_chunk_files(repo: Repository, entries: list[Entry]) -> list[bytes]:
    """The paths of the files some of whose chunks the index does not know."""
    index = repo.refresh_index()
    return [
        e.path
        for e in entries
        if e.kind == mf.FILE and any(bytes.fromhex(h) not in index for h, _n in e.chunks)
    ]


def verify_backup(
    repo: Repository, meta: BackupMetadata, *, quick: bool, ctx: OperationContext
) -> VerifyResult:
    return verify_backups(repo, [meta], quick=quick, ctx=ctx)[0]


def verify_backups(
    repo: Repository, metas: list[BackupMetadata], *, quick: bool, ctx: OperationContext
) -> list[VerifyResult]:
    """One result per backup, each chunk they need read and checked once however many of
    them share it (as restic's `check --read-data` reads each pack once)."""
    started = time.monotonic()
    results = [
        VerifyResult(
            project_id=m.project_id, backup_id=m.id, quick=quick, ok=True, checked_at=ctx.clock()
        )
        for m in metas
    ]
    ctx.set_phase("verifying")
    # chunk -> the (backup, file) pairs that need it
    users: dict[bytes, list[tuple[int, str]]] = defaultdict(list)
    for i, (meta, result) in enumerate(zip(metas, results, strict=True)):
        entries = _manifest_entries(repo, meta, result)
        for e in entries:
            if e.kind != mf.FILE:
                continue
            result.files_checked += 1
            for h, _n in e.chunks:
                users[bytes.fromhex(h)].append((i, e.display_path))

    index = repo.refresh_index()
    for name, why in index.damaged.items():
        for result in results:
            result.errors.append(f"index file {name} is damaged: {why}")
    bad_chunks: dict[bytes, str] = {}
    by_pack: dict[str, list[tuple[BlobLocation, bytes]]] = defaultdict(list)
    for digest in users:
        loc = index.get(digest)
        if loc is None:
            bad_chunks[digest] = "chunk missing from the index"
        else:
            by_pack[loc.pack_id].append((loc, digest))

    pack_sizes = {o.name: o.size for o in pack_objects(repo.store).values()}
    readable: list[tuple[str, Located]] = []
    for pack_id, located in by_pack.items():
        size = pack_sizes.get(pack_name(pack_id))
        if size is None:
            for _loc, d in located:
                bad_chunks[d] = f"pack {pack_id[:16]} is missing"
            continue
        fits: Located = []
        for loc, d in sorted(located, key=lambda x: x[0].offset):
            if loc.offset + loc.length > size:
                bad_chunks[d] = f"pack {pack_id[:16]} is truncated"
            else:
                fits.append((loc, d))
        readable += [(pack_id, batch) for batch in _batches(fits)]
    chunks_checked = {i: 0 for i in range(len(metas))}
    for digest, pairs in users.items():
        if index.get(digest) is not None:
            for i in {i for i, _p in pairs}:
                chunks_checked[i] += 1
    bytes_per_backup = {i: 0 for i in range(len(metas))}

    if not quick:
        total = sum(loc.length for _p, batch in readable for loc, _d in batch)
        ctx.set_phase("verifying", bytes_total=total)
        found = _read_and_check(repo, readable, ctx)
        bad_chunks.update(found)
        for _pack_id, batch in readable:
            for loc, d in batch:
                for i in {i for i, _p in users[d]}:
                    bytes_per_backup[i] += loc.length

    damaged: list[dict[str, str]] = [{} for _m in metas]
    for d, reason in bad_chunks.items():
        for i, path in users[d]:
            damaged[i].setdefault(path, reason)
    elapsed = round(time.monotonic() - started, 3)
    for i, result in enumerate(results):
        result.chunks_checked = chunks_checked[i]
        result.bytes_checked = bytes_per_backup[i]
        for path in sorted(damaged[i]):
            result.ok = False
            if len(result.damaged_files) < MAX_DAMAGED:
                result.damaged_files.append(DamagedFile(path=path, reason=damaged[i][path]))
        result.duration_seconds = elapsed
    ctx.finish(
        files=sum(r.files_checked for r in results), nbytes=sum(r.bytes_checked for r in results)
    )
    return results


def _manifest_entries(repo: Repository, meta: BackupMetadata, result: VerifyResult) -> list[Entry]:
    """A backup's entries; a manifest that is damaged or does not match its checksum is
    recorded in `result` (and yields what can still be read, or nothing)."""
    try:
        data = repo.read_manifest(meta.id)
        if meta.checksum and mf.checksum(data) != meta.checksum:
            result.ok = result.checksum_ok = False
            result.errors.append("manifest does not match the backup's checksum")
        return list(mf.iter_entries(data))
    except (Damaged, mf.ManifestError) as exc:
        result.ok = result.checksum_ok = False
        result.errors.append(str(exc))
        return []


#: Reads of chunk runs in flight at once (network and decompression overlap; memory stays
#: bounded at this many READ_BATCH buffers).
READERS = 4


def _read_and_check(
    repo: Repository, readable: list[tuple[str, Located]], ctx: OperationContext
) -> dict[bytes, str]:
    """Read every run and check each chunk's hash, READERS runs at a time; returns the bad
    chunks with why."""
    bad: dict[bytes, str] = {}
    lock = threading.Lock()

    def check(pack_id: str, batch: Located) -> None:
        ctx.check()
        found: dict[bytes, str] = {}
        try:
            blobs = packs.read_ranges(
                pack_name(pack_id), [(loc.offset, loc.length) for loc, _d in batch]
            )
        except (OSError, EOFError) as exc:
            found = {d: f"pack {pack_id[:16]} unreadable: {exc}" for _loc, d in batch}
        else:
            for (loc, d), blob in zip(batch, blobs, strict=True):
                try:
                    repo.codec.open_blob(d, blob, loc.flags, loc.raw_length, pack_id=pack_id)
                except DamagedChunk as exc:
                    found[d] = str(exc)
            ctx.advance(nbytes=sum(loc.length for loc, _d in batch))
        with lock:
            bad.update(found)

    with (
        contextlib.closing(repo.store.reader()) as packs,
        Pipeline(READERS, depth=2, name="nexus-verify", on_failure=ctx.cancel.set) as pipeline,
    ):
        for pack_id, batch in readable:
            if not pipeline.submit(check, pack_id, batch):
                break
    return bad


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
