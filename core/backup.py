"""Creating a backup: walk, compare with the parent, read changed files, store new chunks.

Runs in worker threads (the chunker, the hasher and the compressor release the GIL). The
write order is restic's: packs, then the index file naming them, then the manifest, then
metadata marked COMPLETED, so a crash at any instant leaves nothing COMPLETED that cannot
be restored.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import manifest as mf
from .chunker import hash_bytes, iter_chunks, new_hasher
from .errors import Damaged, NexusError
from .index import write_index
from .manifest import Entry, ManifestWriter
from .models import MAX_WARNINGS, BackupMetadata, BackupStatus
from .packs import BlobLocation, PackWriter, compress
from .progress import OperationContext
from .repository import HOSTNAME, Repository
from .walker import WalkItem, load_excludes, walk

READ_ATTEMPTS = 3
_local = threading.local()
WINDOW = 256  # files in flight, ahead of the manifest writer
Log = Callable[[str, str], None]  # (level, message)


class SkipFile(Exception):
    """A file that cannot be backed up consistently; it is left out with a warning."""


@dataclass
class RunState:
    """What the worker threads share while a backup runs."""

    repo: Repository
    ctx: OperationContext
    writer: PackWriter | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    reserved: set[bytes] = field(default_factory=set)
    new_locations: list[tuple[bytes, BlobLocation]] = field(default_factory=list)
    bytes_read: int = 0
    bytes_stored: int = 0
    chunks_new: int = 0
    chunks_reused: int = 0

    def on_flush(self, _pack_id: str, locations: list[tuple[bytes, BlobLocation]]) -> None:
        with self.lock:
            self.new_locations.extend(locations)

    def store_chunk(self, digest: bytes, data: memoryview) -> None:
        with self.lock:
            if digest in self.repo.index or digest in self.reserved:
                self.chunks_reused += 1
                return
            self.reserved.add(digest)
            self.chunks_new += 1
        stored, flags = compress(data)
        assert self.writer is not None
        self.writer.add(digest, stored, len(data), flags)
        with self.lock:
            self.bytes_stored += len(stored)


def _open_regular(path: bytes) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        fd = os.open(path, flags)  # O_NOATIME needs ownership
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SkipFile("replaced by a non-regular file while backing up")
    return fd, st


def _stable(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def read_file(state: RunState, item: WalkItem) -> Entry:
    """Chunk, hash and store one file; retried if it changes while being read."""
    ctx = state.ctx
    params = state.repo.chunker_params
    chunker = getattr(_local, "chunker", None)
    if chunker is None or getattr(_local, "params", None) != params:
        chunker = _local.chunker = params.make()
        _local.params = params
    show = item.rel.decode("utf-8", "backslashreplace")
    try:
        fd, st = _open_regular(item.abs)
    except FileNotFoundError:
        raise SkipFile("vanished before it could be read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SkipFile("replaced by a symlink while backing up") from None
        raise SkipFile(f"cannot open: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            for _attempt in range(READ_ATTEMPTS):
                f.seek(0)
                hasher = new_hasher()
                chunks: list[tuple[str, int]] = []
                size = 0
                if st.st_size < params.min_size:
                    # Below the minimum chunk size a file is one chunk whatever its content:
                    # read it whole, without the chunker's large stream buffer.
                    ctx.check()
                    whole = f.read(params.min_size)
                    pieces = [memoryview(whole)] if whole else []
                else:
                    pieces = iter_chunks(chunker, f, ctx.check)
                for data in pieces:
                    digest = hash_bytes(data)
                    hasher.update(data)
                    state.store_chunk(digest, data)
                    chunks.append((digest.hex(), len(data)))
                    size += len(data)
                    with state.lock:
                        state.bytes_read += len(data)
                    ctx.advance(nbytes=len(data), path=show)
                after = os.fstat(fd)
                if _stable(after) == _stable(st) and size == after.st_size:
                    return Entry(
                        path=item.rel,
                        kind=mf.FILE,
                        mode=st.st_mode,
                        mtime_ns=st.st_mtime_ns,
                        size=size,
                        uid=st.st_uid,
                        gid=st.st_gid,
                        ino=st.st_ino,
                        ctime_ns=st.st_ctime_ns,
                        hash=hasher.hexdigest(),
                        chunks=chunks,
                    )
                st = after
                time.sleep(0.05)
    except OSError as exc:
        raise SkipFile(f"read error: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    raise SkipFile(f"kept changing while being read ({READ_ATTEMPTS} attempts)")


def _merge(items: list[WalkItem], ref: Iterator[Entry]) -> Iterator[tuple[WalkItem, Entry | None]]:
    """Pair each walked item with the reference manifest's entry of the same path (both
    sorted by path components), and count the reference's files that are gone."""
    current = next(ref, None)
    for item in items:
        key = mf.sort_key(item.rel)
        while current is not None and current.key < key:
            current = next(ref, None)
        if current is not None and current.key == key:
            yield item, current
            current = next(ref, None)
        else:
            yield item, None


@dataclass
class BackupPlan:
    data_dir: bytes
    excludes: list[str]
    reference: BackupMetadata | None  # the latest completed backup, for stats and reuse
    reuse: bool  # INCREMENTAL/SNAPSHOT/CHECKPOINT reuse unchanged files from the reference
    skip_dirs: set[tuple[int, int]]


def run_backup(
    repo: Repository, meta: BackupMetadata, plan: BackupPlan, ctx: OperationContext, log: Log
) -> BackupMetadata:
    """Carry out a backup whose PENDING metadata exists; returns the COMPLETED metadata."""
    started = time.monotonic()
    stats = meta.stats
    warnings: list[str] = []

    def warn(message: str) -> None:
        if len(warnings) < MAX_WARNINGS:
            warnings.append(message)
        log("WARNING", message)

    meta.status = BackupStatus.RUNNING
    repo.write_metadata(meta)
    repo.refresh_index()

    ctx.set_phase("scanning")
    spec = load_excludes(plan.data_dir, plan.excludes)
    items: list[WalkItem] = []
    for item in walk(plan.data_dir, excludes=spec, skip=plan.skip_dirs, warn=warn, check=ctx.check):
        items.append(item)
        if item.kind == "f":
            ctx.advance(files=1, nbytes=item.st.st_size, path=item.rel.decode("utf-8", "replace"))

    ref_entries: Iterator[Entry] = iter(())
    if plan.reference is not None:
        ref_entries = mf.iter_entries(repo.read_manifest(plan.reference.id))
    ref_files: dict[str, int] = {"count": 0}

    def counting(entries: Iterator[Entry]) -> Iterator[Entry]:
        for e in entries:
            if e.kind == mf.FILE:
                ref_files["count"] += 1
            yield e

    counted = counting(ref_entries)
    paired = list(_merge(items, counted))
    del items
    for _ in counted:  # drain, to count all of the reference's files
        pass

    def reusable(item: WalkItem, old: Entry | None) -> bool:
        return (
            plan.reuse
            and old is not None
            and old.kind == mf.FILE
            and item.kind == "f"
            and old.size == item.st.st_size
            and old.mtime_ns == item.st.st_mtime_ns
            and old.ctime_ns == item.st.st_ctime_ns
            and old.ino == item.st.st_ino
            and all(bytes.fromhex(h) in repo.index for h, _n in old.chunks)
        )

    to_read = [(i, o) for i, o in paired if i.kind == "f" and not reusable(i, o)]
    ctx.set_phase(
        "reading",
        files_total=len(to_read),
        bytes_total=sum(i.st.st_size for i, _o in to_read),
    )

    state = RunState(repo, ctx)
    state.writer = PackWriter(repo.store, state.on_flush, repo.pack_size)
    writer = ManifestWriter(
        {
            "backup_id": meta.id,
            "project_id": meta.project_id,
            "source": plan.data_dir.decode("utf-8", "surrogateescape"),
            "hostname": HOSTNAME,
            "created_at": meta.created_at.isoformat(),
            "chunker": repo.chunker_params.as_dict(),
        }
    )
    referenced: set[str] = set()
    totals = {"files": 0, "size": 0, "dirs": 0, "links": 0, "seen_ref": 0}

    def emit(entry: Entry, old: Entry | None, reused: bool) -> None:
        writer.add(entry)
        if entry.kind == mf.FILE:
            totals["files"] += 1
            totals["size"] += entry.size
            referenced.update(h for h, _n in entry.chunks)
            if old is not None and old.kind == mf.FILE:
                totals["seen_ref"] += 1
            if reused or (old is not None and old.kind == mf.FILE and old.hash == entry.hash):
                stats.files_unchanged += 1
            elif old is not None and old.kind == mf.FILE:
                stats.files_changed += 1
            else:
                stats.files_new += 1
        elif entry.kind == mf.DIR:
            totals["dirs"] += 1
        else:
            totals["links"] += 1

    workers = max(2, min(8, (os.cpu_count() or 2) * 2))
    pending: deque[tuple[WalkItem, Entry | None, Future[Entry] | Entry, bool]] = deque()

    def drain(block_until: int) -> None:
        while pending and (len(pending) > block_until or _ready(pending[0][2])):
            item, old, job, reused = pending.popleft()
            if isinstance(job, Future):
                try:
                    entry = job.result()
                except SkipFile as exc:
                    warn(f"{item.rel.decode('utf-8', 'backslashreplace')}: skipped: {exc}")
                    continue
                emit(entry, old, False)
            else:
                emit(job, old, reused)

    try:
        _read_all(state, paired, reusable, emit, warn, pending, drain, workers)
        state.writer.flush()
        ctx.check()
        # Index, then manifest, then the metadata: the restic write order.
        name = write_index(repo.store, state.new_locations)
    except BaseException:
        # Nothing indexed these packs, so no other backup can depend on them: remove them.
        state.writer.abort()
        for pack in list(state.writer.pack_names):
            with contextlib.suppress(OSError):
                repo.store.delete(pack)
        raise
    for digest, loc in state.new_locations:
        repo.index.add(digest, loc)
    if name:
        repo.index.files.add(name)
    data, checksum = writer.finish()
    repo.write_manifest(meta.id, data)

    stats.bytes_read = state.bytes_read
    stats.bytes_stored = state.bytes_stored
    stats.chunks_new = state.chunks_new
    stats.chunks_reused = state.chunks_reused
    stats.chunks_total = len(referenced)
    stats.dirs_count = totals["dirs"]
    stats.symlinks_count = totals["links"]
    stats.files_removed = max(0, ref_files["count"] - totals["seen_ref"])
    stats.warnings = warnings
    meta.size_bytes = totals["size"]
    meta.files_count = totals["files"]
    meta.checksum = checksum
    meta.status = BackupStatus.VALIDATING
    repo.write_metadata(meta)

    ctx.set_phase("validating")
    if mf.checksum(repo.read_manifest(meta.id)) != checksum:
        raise Damaged("the manifest read back does not match what was written")
    missing = [h for h in referenced if bytes.fromhex(h) not in repo.index]
    if missing:
        raise Damaged(f"{len(missing)} chunks referenced by the backup are not indexed")

    elapsed = time.monotonic() - started
    stats.duration_seconds = round(elapsed, 3)
    stats.throughput_bytes_per_second = round(stats.bytes_read / elapsed, 1) if elapsed else 0.0
    meta.status = BackupStatus.COMPLETED
    meta.completed_at = datetime.now(UTC)
    repo.write_metadata(meta)
    ctx.finish()
    return meta


def _read_all(state, paired, reusable, emit, warn, pending, drain, workers) -> None:
    """Feed files to the reader threads in walk order; the manifest takes them in order."""
    ctx = state.ctx
    with ThreadPoolExecutor(workers, thread_name_prefix="nexus-read") as pool:
        try:
            for item, old in paired:
                ctx.check()
                st = item.st
                reused = False
                if item.kind == "d":
                    entry: Entry | Future[Entry] = Entry(
                        item.rel, mf.DIR, st.st_mode, st.st_mtime_ns, uid=st.st_uid, gid=st.st_gid
                    )
                elif item.kind == "l":
                    try:
                        target = os.readlink(item.abs)
                    except OSError as exc:
                        shown = item.rel.decode("utf-8", "backslashreplace")
                        warn(f"{shown}: skipped: {exc.strerror}")
                        continue
                    entry = Entry(
                        item.rel,
                        mf.SYMLINK,
                        st.st_mode,
                        st.st_mtime_ns,
                        size=st.st_size,
                        uid=st.st_uid,
                        gid=st.st_gid,
                        ino=st.st_ino,
                        ctime_ns=st.st_ctime_ns,
                        target=target,
                    )
                elif reusable(item, old):
                    assert old is not None
                    entry = Entry(
                        item.rel,
                        mf.FILE,
                        st.st_mode,
                        st.st_mtime_ns,
                        size=old.size,
                        uid=st.st_uid,
                        gid=st.st_gid,
                        ino=st.st_ino,
                        ctime_ns=st.st_ctime_ns,
                        hash=old.hash,
                        chunks=old.chunks,
                    )
                    reused = True
                else:
                    entry = pool.submit(_read_counted, state, item)
                pending.append((item, old, entry, reused))
                drain(WINDOW)
            drain(0)
        except BaseException:
            ctx.cancel.set()
            raise


def _read_counted(state: RunState, item: WalkItem) -> Entry:
    entry = read_file(state, item)
    state.ctx.advance(files=1)
    return entry


def _ready(job: object) -> bool:
    return not isinstance(job, Future) or job.done()


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, NexusError):
        return str(exc)
    if isinstance(exc, OSError):
        from .errors import describe_os_error

        return describe_os_error(exc)
    return f"{type(exc).__name__}: {exc}"
