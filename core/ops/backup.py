"""Creating a backup: walk, compare with the parent, read changed files, store new chunks.

Runs in worker threads (the chunker, the hasher and the compressor release the GIL). The
write order is restic's: packs, then the index file naming them, then the manifest, then
metadata marked COMPLETED, so a crash at any instant leaves nothing COMPLETED that cannot
be restored.

Two passes. The scan (core.ops.scan) walks the tree and merges it with the parent's manifest
(both sorted by path components), deciding per entry whether it is unchanged (its parent line
is reused verbatim, nothing read) or must be read; that gives exact totals for progress. The
read pass feeds the files to reader threads (small files in batches, to keep per-file overhead
low: a batch's chunks are stored together, its files' manifest lines encoded by its reader)
and writes manifest lines in walk order, copying the reused spans from the parent's. Without a
parent (nothing to fall back from if it proved damaged) a tree of more than STREAM_AFTER
entries is read as it is walked, its progress total growing: the walked entries held are
then bounded by that buffer and the read window, not by the tree. The new chunks' locations
are kept as their index records (45 bytes a chunk) until the run's one index file is written.
"""

from __future__ import annotations

import base64
import errno
import itertools
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from core.errors import Damaged, NexusError, from_os_error
from core.models import MAX_LEFT_OUT, MAX_WARNINGS, BackupMetadata, BackupStatus, PhaseTimings
from core.ops.confine import DIR_FLAGS
from core.ops.progress import OperationContext
from core.ops.scan import Item, ParentLines, Planned, ReusedSpan, ScanTotals, merge_stream
from core.ops.scan import shown as _shown
from core.ops.walker import Excludes, compile_excludes, exclude_lines, read_xattrs, walk_entries
from core.pipeline import InPlace
from core.repo import manifest as mf
from core.repo.chunker import ChunkerParams, hash_bytes, iter_chunks, new_hasher
from core.repo.codec import IDENTITY
from core.repo.index import pack_records, record_digests, write_index_records
from core.repo.manifest import Entry, ManifestWriter
from core.repo.packs import BlobLocation, PackWriter
from core.repo.repository import HOSTNAME, Repository

READ_ATTEMPTS = 3
#: How much a file may grow between two reads of it and still be read again (besides
#: doubling): past it, it is skipped as growing faster than it can be read.
GROWTH_ROOM = 64 * 1024 * 1024
RACY_NS = 20_000_000  # changed this recently (timestamps are coarse): maybe mid-write
WINDOW = 64  # read jobs in flight ahead of the manifest writer
BATCH_FILES = 64  # small files read by one job
BATCH_BYTES = 4 * 1024 * 1024
LARGE_FILES_AT_ONCE = 2
STREAM_AFTER = 20_000  # entries scanned whole before a backup without a parent streams
Log = Callable[[str, str], None]  # (level, message)
_local = threading.local()
_NOATIME = getattr(os, "O_NOATIME", 0) if os.geteuid() == 0 else 0  # needs ownership
_TOP = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # the data directory itself may be a link
_PROC_FD = os.path.isdir(f"/proc/{os.getpid()}/fd")  # names an open directory by path


_now = time.perf_counter


class PhaseClock:
    """One reader thread's time per overlapping phase (summed at the end of the read pass).

    Each thread adds to its own clock, so no lock is taken to time anything; the times are
    read and summed only once the threads are done."""

    __slots__ = ("busy", "compress", "read", "store")

    def __init__(self) -> None:
        self.busy = self.read = self.compress = self.store = 0.0


class SkipFile(Exception):
    """A file that cannot be backed up consistently; it is left out with a warning."""


@dataclass
class RunState:
    """What the reader threads share while a backup runs."""

    repo: Repository
    ctx: OperationContext
    top: bytes
    params: ChunkerParams
    writer: PackWriter = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reserved: set[bytes] = field(default_factory=set)
    # Each file read through the chunker holds its 8 MiB stream buffer: two at a time are
    # enough to keep two cores busy, and bound the memory whatever the number of threads.
    large_files: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(LARGE_FILES_AT_ONCE)
    )
    #: Batches of small files read at once: one per core. Their reader does a system call or
    #: two per file and takes the GIL back after each, so more of them than cores only queue
    #: for the GIL (and the futex waits cost system time); a big file's reads wait on the
    #: disk, so the read pass's other threads still take those meanwhile. Per run, so that
    #: one backup never waits for another's small files.
    small_batches: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(max(1, os.cpu_count() or 2))
    )
    #: Each stored pack's id and its chunks' index records (`index.pack_records`, 45 bytes
    #: a chunk rather than a location object), kept until the run's index file is written.
    new_packs: list[tuple[str, bytes]] = field(default_factory=list)
    bytes_read: int = 0
    bytes_stored: int = 0
    chunks_new: int = 0
    chunks_reused: int = 0
    #: The data directory's descriptor: every open goes through it, never through its path.
    top_fd: int = -1
    #: Every chunk the backup names (BackupRun.referenced): readers add their files'.
    referenced: set[bytes] = field(default_factory=set)
    #: The chunks indexed when the run began (a dict's keys: `in` without a call).
    stored: Collection[bytes] = field(init=False)
    #: No cipher: a chunk's id is its content's hash (`ids`).
    plain: bool = field(init=False)
    #: Per thread, the directories (name, descriptor) from the top down to the one it last
    #: opened a file in.
    dirs: dict[int, list[tuple[bytes, int]]] = field(default_factory=dict)
    #: Warnings of the reader threads (extended attributes not readable), for the run.
    notes: list[str] = field(default_factory=list)
    #: The new chunks' bytes before sealing.
    bytes_new_raw: int = 0
    #: Per thread, its phase clock (see PhaseClock).
    clocks: dict[int, PhaseClock] = field(default_factory=dict)
    #: Per thread, the directory (name, descriptor) it last asked `dir_fd` for: most files
    #: of a batch share it, and then no component is compared.
    last_dir: dict[int, tuple[bytes, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stored = self.repo.index.entries.keys()
        self.plain = self.repo.codec.cipher is IDENTITY

    def clock(self) -> PhaseClock:
        """This thread's phase clock (made on its first use; only this thread's key)."""
        clock = self.clocks.get(threading.get_ident())
        if clock is None:
            clock = self.clocks[threading.get_ident()] = PhaseClock()
        return clock

    def ids(self, data: bytes | memoryview) -> tuple[bytes, str]:
        """A chunk's id in this repository (`repo.codec.chunk_id`: keyed under encryption)
        and, for a file of that one chunk, its content hash (unkeyed BLAKE3, as every file's:
        the same hash whatever the repository, computed once when the two are the same)."""
        digest = self.repo.codec.chunk_id(data)
        if self.plain:
            return digest, digest.hex()
        return digest, hash_bytes(data).hex()

    def note(self, message: str) -> None:
        with self.lock:
            self.notes.append(message)

    def take_notes(self) -> list[str]:
        with self.lock:
            notes, self.notes = self.notes, []
        return notes

    def open(self, rel: bytes, flags: int) -> int:
        """Open an entry of the data directory by its name relative to its directory's
        descriptor (`dir_fd`), never through a symlink."""
        parent, _, name = rel.rpartition(b"/")
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=self.dir_fd(parent))

    def dir_fd(self, rel: bytes) -> int:
        """The descriptor of the directory `rel` (b"": the top) beneath `top_fd`, each
        component opened without following a symlink. Each thread keeps the directories
        down to the last one it opened (the files of a batch mostly share their directory,
        the next batch's are mostly its neighbours'): only the components that differ are
        opened."""
        if not rel:
            return self.top_fd
        me = threading.get_ident()
        last = self.last_dir.get(me)
        if last is not None and last[0] == rel:
            return last[1]
        chain = self.dirs.setdefault(me, [])  # only this thread's key
        parts = rel.split(b"/")
        keep = 0
        while keep < len(chain) and keep < len(parts) and chain[keep][0] == parts[keep]:
            keep += 1
        self.last_dir.pop(me, None)
        while len(chain) > keep:
            os.close(chain.pop()[1])
        for part in parts[keep:]:
            fd = os.open(part, DIR_FLAGS, dir_fd=chain[-1][1] if chain else self.top_fd)
            chain.append((part, fd))
        self.last_dir[me] = (rel, chain[-1][1])
        return chain[-1][1]

    def close_dirs(self) -> None:
        self.last_dir.clear()
        for chain in self.dirs.values():
            for _name, fd in chain:
                os.close(fd)
        self.dirs.clear()

    def xattrs_of_fd(self, fd: int, rel: bytes) -> dict[bytes, bytes] | None:
        """The open file's extended attributes; a warning (and none) when unreadable."""
        try:
            return read_xattrs(fd)
        except OSError as exc:
            self.note(f"{_shown(rel)}: cannot read extended attributes: {exc.strerror or exc}")
            return None

    def on_flush(self, pack_id: str, locations: list[tuple[bytes, BlobLocation]]) -> None:
        records = pack_records(locations)
        with self.lock:
            self.new_packs.append((pack_id, records))

    def store_chunk(self, digest: bytes, data: memoryview | bytes) -> None:
        self.store_chunks([(digest, data)])

    def store_chunks(self, pieces: list[tuple[bytes, memoryview | bytes]]) -> None:
        """Seal and store the chunks not yet indexed nor stored by this run (a batch of small
        files' chunks at once: one lock to sort them out, one to add them to the packs)."""
        fresh = []
        with self.lock:
            stored, reserved = self.stored, self.reserved
            for digest, data in pieces:
                if digest in stored or digest in reserved:
                    continue
                reserved.add(digest)
                fresh.append((digest, data))
            self.chunks_reused += len(pieces) - len(fresh)
            self.chunks_new += len(fresh)
        if not fresh:
            return
        t0 = _now()
        sealed = self.repo.codec.seal_blobs(fresh)
        blobs = [
            (digest, stored, flags, len(data))
            for (digest, data), (stored, flags) in zip(fresh, sealed, strict=True)
        ]
        t1 = _now()
        try:
            self.writer.add_many(blobs)
        except OSError as exc:
            # A write to the repository failed (disk full, I/O error): fatal to the backup,
            # never to be mistaken for an unreadable source file.
            raise from_os_error(exc, "writing to the repository") from exc
        clock = _local.clock
        t2 = _now()
        clock.compress += t1 - t0
        clock.store += t2 - t1
        n_stored = sum(len(b[1]) for b in blobs)
        n_raw = sum(b[3] for b in blobs)
        with self.lock:
            self.bytes_stored += n_stored
            self.bytes_new_raw += n_raw


def _open_regular(state: RunState, rel: bytes) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = state.open(rel, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        fd = state.open(rel, flags)  # O_NOATIME needs ownership
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SkipFile("replaced by a non-regular file while backing up")
    return fd, st


def _stable(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _racy(st: os.stat_result) -> bool:
    """Changed so lately that a write may still be going on. Then an fstat that did not
    move around the read proves nothing: a writer descheduled in the middle of one write()
    leaves size and times standing while half the new bytes are in place."""
    return st.st_ctime_ns >= time.time_ns() - RACY_NS


def _settled(fd: int, after: os.stat_result, data: bytes | None) -> bool:
    """Whether a read whose fstat did not move is whole: the file was not changed lately,
    or it still stands as read RACY_NS after its last change, or (`data`, a small file read
    whole) it has only grown since and still starts with what was read: an append, so what
    was read is a state the file really had."""
    if not _racy(after):
        return True
    # until RACY_NS after its last change (a write still going on will have moved it by
    # then), and never longer than that: a ctime ahead of this clock (a network filesystem's
    # server) must not stall the backup
    wait_ns = after.st_ctime_ns + RACY_NS - time.time_ns()
    time.sleep(min(max(wait_ns, 1_000_000), RACY_NS) / 1e9)
    again = os.fstat(fd)
    if _stable(again) == _stable(after):
        return True
    if data is None or again.st_ino != after.st_ino or again.st_size < len(data):
        return False
    return os.pread(fd, len(data), 0) == data


def _chunker(params: ChunkerParams):
    chunker = getattr(_local, "chunker", None)
    if chunker is None or getattr(_local, "params", None) != params:
        chunker = _local.chunker = params.make()
        _local.params = params
    return chunker


_SMALL_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | _NOATIME


class _Batch:
    """What a reader thread's batch of small files leaves to be done once per batch rather
    than per file: the chunks to store (`RunState.store_chunks`) and the bytes read. Nothing
    is written to the manifest before its batch is done, so a chunk stored at the end of its
    batch is stored before any entry naming it is written."""

    __slots__ = ("nbytes", "pieces", "size")

    FLUSH = 1024 * 1024  # bytes of chunks held before they are stored

    def __init__(self) -> None:
        self.pieces: list[tuple[bytes, bytes]] = []
        self.size = 0
        self.nbytes = 0

    def add(self, state: RunState, digest: bytes, data: bytes) -> None:
        self.pieces.append((digest, data))
        self.size += len(data)
        if self.size >= self.FLUSH:
            self.flush(state)

    def flush(self, state: RunState) -> None:
        if self.pieces:
            pieces, self.pieces, self.size = self.pieces, [], 0
            state.store_chunks(pieces)


def _read_small(state: RunState, item: Item, batch: _Batch) -> Entry | None:
    """The fast path of a file below the minimum chunk size: open, one read, one fstat.
    Returns None when the file is not exactly as the walk saw it (the careful path, with
    its retries and checks, then takes over). Its chunk is left to `batch` to store."""
    t0 = _now()
    parent, _, name = item.rel.rpartition(b"/")
    try:
        fd = os.open(name, _SMALL_FLAGS, dir_fd=state.dir_fd(parent))
    except OSError:
        return None
    try:
        # as many bytes as the walk saw, and one more to see it grew: a read of the
        # chunker's minimum size would allocate (and page in) that much for every tiny file
        data = os.read(fd, item.size + 1)
        st = os.fstat(fd)
        try:
            named = os.listxattr(fd)  # most files have none: nothing more to ask
        except OSError:
            named = True  # read_xattrs tells "none supported" from a failure to warn about
        xattrs = state.xattrs_of_fd(fd, item.rel) if named else None
    except OSError:
        return None
    finally:
        os.close(fd)
        _local.clock.read += _now() - t0
    if (
        not stat.S_ISREG(st.st_mode)
        or (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        != (item.size, item.mtime_ns, item.ctime_ns, item.ino)
        or len(data) != st.st_size
        or _racy(st)  # the careful path makes sure it is not mid-write
    ):
        return None
    digest, content = state.ids(data)
    chunks = []
    if data:
        batch.add(state, digest, data)
        chunks.append((content if state.plain else digest.hex(), len(data)))
    batch.nbytes += len(data)
    return _file_entry(item, st, size=len(data), content=content, chunks=chunks, xattrs=xattrs)


def _file_entry(
    item: Item,
    st: os.stat_result,
    *,
    size: int,
    content: str,
    chunks: list[tuple[str, int]],
    xattrs: dict[bytes, bytes] | None,
) -> Entry:
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
        hash=content,
        chunks=chunks,
        link=item.link,
        xattrs=xattrs,
    )


def read_file(state: RunState, item: Item) -> Entry:
    """Chunk, hash and store one file; retried if it changes while being read. Inside a
    batch (`read_batch`), a small file's chunk is stored with the batch's."""
    ctx = state.ctx
    params = state.params
    if item.size < params.min_size:
        batch = getattr(_local, "batch", None)
        entry = _read_small(state, item, batch) if batch is not None else None
        if entry is not None:
            return entry
    try:
        fd, st = _open_regular(state, item.rel)
    except FileNotFoundError:
        raise SkipFile("vanished before it could be read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SkipFile("replaced by a symlink while backing up") from None
        raise SkipFile(f"cannot open: {exc.strerror or exc}") from None
    first_size = st.st_size
    try:
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            for _attempt in range(READ_ATTEMPTS):
                f.seek(0)
                chunks: list[tuple[str, int]] = []
                size = 0
                data: bytes | None = None
                if st.st_size < params.min_size:
                    # Below the minimum chunk size a file is one chunk whatever its content:
                    # read it whole, without the chunker's stream buffer; its content hash
                    # is its chunk's hash (in a plain repository; see RunState.ids).
                    ctx.check()
                    t0 = _now()
                    data = f.read(params.min_size)
                    _local.clock.read += _now() - t0
                    digest, content = state.ids(data)
                    if data:
                        state.store_chunk(digest, data)
                        chunks.append((digest.hex(), len(data)))
                    size = len(data)
                    with state.lock:
                        state.bytes_read += size
                    ctx.advance(nbytes=size)
                else:
                    with state.large_files:
                        content, size = _chunk_file(state, item, f, chunks, st.st_size)
                after = os.fstat(fd)
                if (
                    _stable(after) == _stable(st)
                    and size == after.st_size
                    and _settled(fd, after, data)
                ):
                    xattrs = state.xattrs_of_fd(fd, item.rel)
                    return _file_entry(
                        item, st, size=size, content=content, chunks=chunks, xattrs=xattrs
                    )
                # the pause first, then the state the next read is judged against: taken
                # before the pause, every write during it (a log appended to every 20 ms)
                # failed the next attempt as well, whatever the read saw
                time.sleep(0.05)
                st = os.fstat(fd)
                if st.st_size > max(2 * first_size, first_size + GROWTH_ROOM):
                    raise SkipFile("kept growing while being read")
    except OSError as exc:
        raise SkipFile(f"read error: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    raise SkipFile(f"kept changing while being read ({READ_ATTEMPTS} attempts)")


def _chunk_file(
    state: RunState, item: Item, f: object, chunks: list[tuple[str, int]], limit: int
) -> tuple[str, int]:
    """Cut a file into content-defined chunks, storing each; returns its hash and size.
    No more than `limit` bytes are read (its size when this read began): a file another
    process grows faster than it is read would otherwise be read, and stored, for ever."""
    ctx = state.ctx
    hasher = new_hasher()
    chunk_id = state.repo.codec.chunk_id
    size = 0
    zero_id: bytes | None = None

    def take(digest: bytes, piece: bytes | memoryview) -> None:
        nonlocal size
        hasher.update(piece)
        state.store_chunk(digest, piece)
        chunks.append((digest.hex(), len(piece)))
        size += len(piece)
        with state.lock:
            state.bytes_read += len(piece)  # a hole's zeros too: the file's bytes, as read
        ctx.advance(nbytes=len(piece), path=item.shown)

    for start, end, hole in _spans(f, limit, state.params.max_size):  # type: ignore[arg-type]
        if hole:
            # a hole of whole chunks of the maximum size (where the chunker cuts a run of
            # zeros), each the one zero chunk, hashed once and never read: a sparse file of
            # 10 GiB is read as its data, not its 10 GiB
            zeros = _zeros(state.params.max_size)
            for _ in range((end - start) // len(zeros)):
                ctx.check()
                if zero_id is None:
                    zero_id = chunk_id(zeros)
                take(zero_id, zeros)
            continue
        f.seek(start)  # type: ignore[attr-defined]
        timed = _TimedFile(f, _local.clock, end - start)
        for piece in iter_chunks(_chunker(state.params), timed, ctx.check):  # type: ignore[arg-type]
            take(chunk_id(piece), piece)
    return hasher.hexdigest(), size


_ZEROS: dict[int, bytes] = {}


def _zeros(n: int) -> bytes:
    z = _ZEROS.get(n)
    if z is None:
        z = _ZEROS[n] = bytes(n)
    return z


def _spans(f: object, limit: int, chunk: int) -> Iterator[tuple[int, int, bool]]:
    """[start, end) spans covering the first `limit` bytes of an open file, in order: holes
    (`True`) of a whole number of `chunk` bytes, found with SEEK_DATA, and the rest to read.
    A filesystem that cannot tell its holes gives one span to read."""
    fd = f.fileno()  # type: ignore[attr-defined]
    pos = 0  # where the span to read begins
    at = 0  # where to look for the next hole
    while at < limit:
        try:
            hole = os.lseek(fd, at, os.SEEK_HOLE)
        except OSError:  # no holes told, or the file shrank: the read finds out
            break
        if hole >= limit:
            break
        try:
            data = os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no data after the hole, it ends the file
                break
            data = limit
        data = min(data, limit)
        whole = (data - hole) // chunk * chunk
        if whole:
            if hole > pos:
                yield pos, hole, False
            yield hole, hole + whole, True
            pos = hole + whole
        at = max(data, at + 1)
    if pos < limit:
        yield pos, limit, False


class _TimedFile:
    """A file whose reads (the chunker's, 8 MiB at a time) add to a phase clock, and end
    after `limit` bytes."""

    __slots__ = ("_clock", "_f", "_left")

    def __init__(self, f: object, clock: PhaseClock, limit: int) -> None:
        self._f = f
        self._clock = clock
        self._left = limit

    def readinto(self, buf: memoryview) -> int | None:
        if self._left <= 0:
            return 0
        view = memoryview(buf)
        if len(view) > self._left:
            view = view[: self._left]
        t0 = _now()
        try:
            n = self._f.readinto(view)  # type: ignore[attr-defined]
        finally:
            self._clock.read += _now() - t0
        self._left -= n or 0
        return n


def read_small_batch(state: RunState, items: list[Item]) -> list[Entry | SkipFile]:
    """`read_batch` of small files, one such batch per core at a time (`small_batches`)."""
    with state.small_batches:
        return read_batch(state, items)


def read_batch(state: RunState, items: list[Item]) -> list[Entry | SkipFile]:
    """Read several files in one job; a file that cannot be read is returned as its SkipFile.
    The small files' chunks are stored together (`_Batch`), before the job returns."""
    out: list[Entry | SkipFile] = []
    # this thread's clock, for everything timed while it reads the batch (a thread-local
    # attribute is cheaper to reach per file than the state's dict of clocks)
    clock = _local.clock = state.clock()
    batch = _local.batch = _Batch()
    ctx = state.ctx
    t0 = _now()
    try:
        for item in items:
            ctx.check()
            done = batch.nbytes
            try:
                out.append(read_file(state, item))
            except SkipFile as exc:
                out.append(exc)
            ctx.advance(files=1, nbytes=batch.nbytes - done, path=item.shown)
        batch.flush(state)
        # the manifest lines and the chunks named, here rather than in the thread that
        # writes the manifest in order (it also walks the tree: the read pass's bottleneck)
        refs = []
        encode = mf.encode_entry
        for entry in out:
            if type(entry) is Entry:
                entry.raw = encode(entry)
                refs.extend(bytes.fromhex(h) for h, _n in entry.chunks)
        with state.lock:
            state.bytes_read += batch.nbytes
            state.referenced.update(refs)
    finally:
        _local.batch = None
        clock.busy += _now() - t0
    return out


@dataclass
class BackupPlan:
    data_dir: bytes
    excludes: list[str]
    reference: BackupMetadata | None  # the latest completed backup, for stats and reuse
    reuse: bool  # INCREMENTAL/SNAPSHOT/CHECKPOINT reuse unchanged entries of the reference
    skip_dirs: set[tuple[int, int]]
    #: Filled on failure: the packs the run stored, for the caller to drop after its lock.
    left_packs: list[str] = field(default_factory=list)
    #: Read the data directory's `.nexusignore` (a pre-restore checkpoint does not).
    use_ignore_file: bool = True
    #: The data directory opened by the caller, who judged it by this descriptor (it is no
    #: repository, design I13) and owns it: the walk and every file are read through it,
    #: never through `data_dir` (which only names the source), so a swap of that path for a
    #: symlink after the check cannot make the backup read anything else.
    top_fd: int | None = None
    #: `top_fd` was opened beneath a trusted directory (core.ops.confine): a `.nexusignore`
    #: that is a symlink is not followed (else it is: a link the user made is theirs).
    confined: bool = False


class BackupRun:
    """One backup from PENDING metadata to COMPLETED."""

    def __init__(
        self,
        repo: Repository,
        meta: BackupMetadata,
        plan: BackupPlan,
        ctx: OperationContext,
        log: Log,
    ) -> None:
        self.repo = repo
        self.meta = meta
        self.plan = plan
        self.ctx = ctx
        self.log = log
        self.warnings: list[str] = []
        self.left_out: list[bytes] = []  # what the walk or the read could not hold
        self.left_out_more = False
        self.referenced: set[bytes] = set()
        self.counts = dict.fromkeys(
            ("files", "size", "dirs", "links", "new", "changed", "unchanged", "seen_ref"), 0
        )
        self.ref_files = 0
        self.to_read = (0, 0)  # files and bytes the read pass reads
        # The parent's compressed manifest and its checksum as the scan read it, when the
        # scan's items reuse spans of it.
        self.parent_data: bytes | None = None
        self.parent_checksum: str | None = None
        self.exclude_lines: list[str] = []  # the effective gitignore lines, for the header
        self.top_fd = -1  # the data directory's descriptor while the run goes on
        #: Files skipped by the read pass, to the path written instead as the first name of
        #: their inode (None until one is): an entry's `link` names a path in the manifest.
        self.relinked: dict[bytes, bytes | None] = {}
        self.workers = 0  # reader threads of the read pass
        #: The scan's totals, growing while it streams (`_scan_streamed`).
        self.totals = ScanTotals()
        #: The read pass follows the walk rather than a finished scan.
        self.streaming = False
        #: The sequential phases' wall times (PhaseTimings' field names).
        self.walls: dict[str, float] = {}

    def _timed(self, phase: str, since: float) -> float:
        """Add the time since `since` to a sequential phase's wall time; returns now."""
        now = _now()
        self.walls[phase] = self.walls.get(phase, 0.0) + now - since
        return now

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        self.log("WARNING", message)

    def leave_out(self, rel: bytes) -> None:
        """`rel` was seen and not backed up: recorded, so that a restore's --delete of this
        backup never removes it (design I4)."""
        if len(self.left_out) < MAX_LEFT_OUT:
            self.left_out.append(rel)
        else:
            self.left_out_more = True

    # --- scan: walk and merge with the parent ----------------------------------------------

    def _parent(self) -> mf.Records | None:
        """The reference's manifest as records, or None (no reference, or it is unusable)."""
        ref = self.plan.reference
        if ref is None:
            return None
        try:
            data = self.repo.read_manifest(ref.id)
            mf.read_header(data)
        except Damaged as exc:
            self._unusable(str(exc))
            return None
        return mf.Records(data)

    def _unusable(self, why: str) -> None:
        assert self.plan.reference is not None
        self.log("WARNING", f"parent {self.plan.reference.id} unusable ({why}): reading all")
        self.plan.reuse = False
        self.plan.reference = None
        self.meta.parent_backup_id = None

    def scan(self) -> Iterable[Planned]:
        """Walk and merge with the parent. The parent's lines are compared field by field
        without being decoded into entries; they are only as good as the parent manifest's
        checksum, which is known once its last line went by: when it does not match (or a
        line is not even JSON), the parent is dropped and the tree scanned again without it.
        Without a parent there is nothing to fall back from: a large tree is then read as
        it is walked (`_scan_streamed`)."""
        plan = self.plan
        self.exclude_lines = exclude_lines(
            plan.data_dir,
            plan.excludes,
            use_ignore_file=plan.use_ignore_file,
            top_fd=plan.top_fd,
            follow_link=not plan.confined,
            warn=self.warn,
        )
        spec = compile_excludes(self.exclude_lines)
        while True:
            self.ctx.set_phase("scanning")
            records = self._parent()
            if records is None:
                return self._scan_streamed(spec)
            try:
                items = self._scan(spec, records)
                self._check_top()
            except mf.ManifestError as exc:
                self._unusable(str(exc))
            else:
                expected = self.plan.reference.checksum if self.plan.reference else None
                if not expected or records.checksum == expected:
                    self.parent_data = records.data
                    self.parent_checksum = records.checksum
                    return items
                self._unusable("its manifest does not match its checksum")
            self.warnings.clear()
            self.left_out.clear()
            self.left_out_more = False
            self.referenced.clear()
            self.counts = dict.fromkeys(self.counts, 0)

    def _check_top(self) -> None:
        """The data directory was removed while it was walked: the walk through its
        descriptor saw it emptied, which must not pass for a backup of an empty tree (a
        restore of it with --delete would empty the target)."""
        if os.fstat(self.top_fd).st_nlink == 0:
            shown = _shown(self.plan.data_dir)
            raise NexusError(f"data directory {shown} was removed during the backup")

    def _merged(self, spec: Excludes | None, records: mf.Records | None) -> Iterator[Planned]:
        """The walk merged with the parent (core.ops.scan), as a stream; `self.totals` grows
        with it."""
        reuse = self.plan.reuse and records is not None
        return merge_stream(
            walk_entries(
                self.plan.data_dir,
                top_fd=self.top_fd,
                excludes=spec,
                skip=self.plan.skip_dirs,
                warn=self.warn,
                check=self.ctx.check,
                left_out=self.leave_out,
            ),
            ParentLines(records if records is not None else ()),
            self.totals,
            reuse=reuse,
            # A parent without a checksum (never written so): every reused line is checked whole.
            strict=reuse and not (self.plan.reference and self.plan.reference.checksum),
            stored=self.repo.index.entries.keys(),  # a dict's keys: `in` without a call
            add_refs=self.referenced.update,
            advance=self._scanned,
        )

    def _scanned(self, files: int, nbytes: int, path: str | None) -> None:
        """The scan's progress: entries scanned, until the read pass starts on them."""
        if not self.streaming:
            self.ctx.advance(files, nbytes, path)

    def _scan(self, spec: Excludes | None, records: mf.Records | None) -> list[Planned]:
        """The walk merged with the parent whole, its totals kept for the read pass's
        progress and the backup's stats."""
        self.totals = ScanTotals()
        items = list(self._merged(spec, records))
        self._count()
        return items

    def _scan_streamed(self, spec: Excludes | None) -> Iterable[Planned]:
        """The walk without a parent. A tree of up to STREAM_AFTER entries is scanned whole
        first (exact totals for the progress from the start); a larger one is read as it is
        walked, so the entries held are bounded by STREAM_AFTER and the read pass's window,
        not by the tree, and the totals grow as the walk goes (as restic's)."""
        self.totals = ScanTotals()
        stream = self._merged(spec, None)
        head = list(itertools.islice(stream, STREAM_AFTER))
        if len(head) < STREAM_AFTER:
            self._check_top()
            self._count()
            return head
        self.streaming = True
        self.to_read = (self.totals.read_files, self.totals.read_bytes)
        return itertools.chain(head, self._rest(stream))

    def _rest(self, stream: Iterator[Planned]) -> Iterator[Planned]:
        yield from stream
        self._check_top()
        self._count()

    def _count(self) -> None:
        """The scan's totals into the backup's counts, once the walk is done."""
        totals = self.totals
        c = self.counts
        c["files"] += totals.reused_files
        c["size"] += totals.reused_bytes
        c["seen_ref"] += totals.reused_files
        c["unchanged"] += totals.reused_files
        c["dirs"] += totals.reused_dirs
        c["links"] += totals.reused_links
        self.ref_files = totals.parent_files
        self.to_read = (totals.read_files, totals.read_bytes)

    def _grow_totals(self) -> None:
        """While the read pass follows the walk: the totals of what is to be read so far.
        (Plain attribute stores: the context's snapshot reads them under its own lock.)"""
        ctx, totals = self.ctx, self.totals
        ctx.files_total, ctx.bytes_total = totals.read_files, totals.read_bytes

    # --- read: files to the reader threads, manifest lines in order ------------------------

    def _emit(self, writer: ManifestWriter, item: Item, entry: Entry) -> None:
        """Write a new or changed entry (reused ones were counted by the scan)."""
        c = self.counts
        if entry.link is not None and entry.link in self.relinked:
            # the first name of its inode was skipped: the first written takes its place
            first = self.relinked[entry.link] or entry.path
            self.relinked[entry.link] = first
            entry.link = None if first == entry.path else first
            entry.raw = None  # encoded by its reader with the old link
        writer.add_line(entry.path, entry.raw or mf.encode_entry(entry))
        if item.kind == "f":
            c["files"] += 1
            c["size"] += entry.size
            if item.had_file:
                c["seen_ref"] += 1
                if item.old_hash == entry.hash:
                    c["unchanged"] += 1
                else:
                    c["changed"] += 1
            else:
                c["new"] += 1
            # its chunks were added to `referenced` by its reader (read_batch)
        elif item.kind == "d":
            c["dirs"] += 1
        else:
            c["links"] += 1

    def _direct(self, item: Item, state: RunState) -> Entry:
        """The entry of a directory or symlink, with its extended attributes."""
        if item.kind == "d":
            return Entry(
                item.rel,
                mf.DIR,
                item.mode,
                item.mtime_ns,
                uid=item.uid,
                gid=item.gid,
                ctime_ns=item.ctime_ns,
                xattrs=self._xattrs(item, state),
            )
        parent, _, name = item.rel.rpartition(b"/")
        try:
            target = os.readlink(name, dir_fd=state.dir_fd(parent))
        except FileNotFoundError:
            raise SkipFile("vanished before it could be read") from None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # not a symlink any more: said as such, not EINVAL
                raise SkipFile("replaced by a file or directory while backing up") from None
            raise
        return Entry(
            item.rel,
            mf.SYMLINK,
            item.mode,
            item.mtime_ns,
            size=item.size,
            uid=item.uid,
            gid=item.gid,
            ino=item.ino,
            ctime_ns=item.ctime_ns,
            target=target,
            xattrs=self._xattrs(item, state),
        )

    def _xattrs(self, item: Item, state: RunState) -> dict[bytes, bytes] | None:
        """A directory's or symlink's extended attributes (never the symlink's target's),
        read by its name relative to its directory's descriptor; a warning and none when they
        cannot be read (none without a warning when the entry is gone since the scan)."""
        parent, _, name = item.rel.rpartition(b"/")
        try:
            dir_fd = state.dir_fd(parent)
            if _PROC_FD:
                # listxattr has no dir_fd: the descriptor's /proc link is followed to the
                # directory, the entry itself is not (one call, no open)
                return read_xattrs(b"/proc/self/fd/%d/%s" % (dir_fd, name))
            if item.kind == "l":
                return None  # no way to name a symlink by its directory's descriptor
            fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            try:
                return read_xattrs(fd)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.warn(f"{item.shown}: cannot read extended attributes: {exc.strerror or exc}")
            return None

    def read(self, items: Iterable[Planned], state: RunState, writer: ManifestWriter) -> None:
        ctx = self.ctx
        workers = self.workers = max(2, min(8, (os.cpu_count() or 2) * 2))
        # Each unit: (items, future or None); a unit without a future is emitted directly.
        pending: deque[tuple[list, Future[list[Entry | SkipFile]] | None]] = deque()
        add_lines = writer.add_lines
        spans = mf.Spans(self.parent_data) if self.parent_data is not None else None

        def drain(keep: int) -> None:
            while pending and (len(pending) > keep or _done(pending[0][1])):
                unit, job = pending.popleft()
                if job is None:
                    for item in unit:
                        if type(item) is ReusedSpan:
                            assert spans is not None
                            add_lines(item.first, item.last, spans.take(item.start, item.end))
                            continue
                        try:
                            self._emit(writer, item, self._direct(item, state))
                        except (OSError, SkipFile) as exc:
                            why = exc if isinstance(exc, SkipFile) else exc.strerror or exc
                            self.warn(f"{item.shown}: skipped: {why}")
                            self.leave_out(item.rel)
                    continue
                for item, result in zip(unit, job.result(), strict=True):
                    if isinstance(result, SkipFile):
                        self.warn(f"{item.shown}: skipped: {result}")
                        self.leave_out(item.rel)
                        self.relinked.setdefault(item.rel, None)
                    else:
                        self._emit(writer, item, result)
                for note in state.take_notes():
                    self.warn(note)

        min_size = state.params.min_size
        streaming = self.streaming
        # batches of small files: read by this thread while they come from the page cache
        in_place = InPlace()
        with ThreadPoolExecutor(workers, thread_name_prefix="nexus-read") as pool:
            try:
                batch: list[Item] = []
                batch_bytes = 0
                direct: list[Planned] = []

                def flush_direct() -> None:
                    nonlocal direct
                    if direct:
                        pending.append((direct, None))
                        direct = []

                def flush_batch() -> None:
                    nonlocal batch, batch_bytes
                    if batch:
                        if streaming:
                            self._grow_totals()
                        one_big = len(batch) == 1 and batch[0].size >= min_size
                        if one_big:
                            pending.append((batch, pool.submit(read_batch, state, batch)))
                        elif in_place.here():
                            done: Future[list[Entry | SkipFile]] = Future()
                            done.set_result(in_place.run(read_batch, state, batch))
                            pending.append((batch, done))
                        else:
                            pending.append((batch, pool.submit(read_small_batch, state, batch)))
                        batch, batch_bytes = [], 0
                        drain(WINDOW)

                for n, item in enumerate(items):
                    if type(item) is ReusedSpan or item.kind != "f":  # type: ignore[union-attr]
                        if batch:
                            flush_batch()
                        direct.append(item)
                        if not n & 4095:
                            ctx.check()
                        continue
                    assert isinstance(item, Item)
                    ctx.check()
                    flush_direct()
                    if item.size >= min_size:
                        flush_batch()
                        batch = [item]
                        flush_batch()
                        continue
                    batch.append(item)
                    batch_bytes += item.size
                    if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                        flush_batch()
                flush_batch()
                flush_direct()
                if streaming:
                    self._grow_totals()  # the walk is done: exact
                drain(0)
                # The spans copied are the lines the scan compared only if the parent's
                # manifest streamed the same bytes again.
                if spans is not None and spans.finish() != self.parent_checksum:
                    raise Damaged("the parent's manifest changed while the backup read it")
            except BaseException:
                ctx.cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    # --- the whole run ---------------------------------------------------------------------

    def run(self) -> BackupMetadata:
        """The data directory is opened once (unless the plan brings its descriptor) and
        everything is read through that descriptor, each entry by its name relative to its
        directory opened without following symlinks: what is backed up is the tree below the
        directory that was opened, whatever happens to its path or its subdirectories'
        paths meanwhile."""
        if self.plan.top_fd is not None:
            self.top_fd = self.plan.top_fd
            return self._run()
        self.top_fd = os.open(self.plan.data_dir, _TOP)
        try:
            return self._run()
        finally:
            os.close(self.top_fd)

    def _run(self) -> BackupMetadata:
        started = time.monotonic()
        repo, meta, ctx = self.repo, self.meta, self.ctx
        meta.status = BackupStatus.RUNNING
        repo.write_metadata(meta)
        repo.refresh_index()

        t = _now()
        items = self.scan()
        t = self._timed("scan_seconds", t)
        ctx.set_phase("reading", files_total=self.to_read[0], bytes_total=self.to_read[1])
        state = RunState(
            repo,
            ctx,
            self.plan.data_dir,
            repo.chunker_params,
            top_fd=self.top_fd,
            referenced=self.referenced,
        )
        state.writer = repo.pack_writer(state.on_flush)
        writer = ManifestWriter(
            {
                "backup_id": meta.id,
                "project_id": meta.project_id,
                "source": self.plan.data_dir.decode("utf-8", "surrogateescape"),
                "hostname": HOSTNAME,
                "created_at": meta.created_at.isoformat(),
                # the config's parameters: never the seed an encrypted repository derives
                "chunker": ChunkerParams.from_dict(repo.config.chunker.model_dump()).as_dict(),
                "excludes": self.exclude_lines,
            }
        )
        try:
            self.read(items, state, writer)
            del items
            self.parent_data = None
            t = self._timed("read_pass_seconds", t)
            state.writer.flush()
            t = self._timed("store_seconds", t)
            ctx.check()
            # Index, then manifest, then the metadata: the restic write order.
            state.reserved.clear()  # every chunk stored: in new_packs now
            write_index_records(repo.store, repo.sealing_codec(), state.new_packs)
        except BaseException:
            # Not indexed by this run; but a concurrent run may have stored byte-identical
            # packs (a pack is named by the hash of its bytes) and indexed them: the caller
            # drops them once no run can be in flight (reclaim.drop_unindexed_packs).
            state.writer.abort()
            self.plan.left_packs.extend(state.writer.pack_names)
            raise
        finally:
            state.close_dirs()
        # The in-memory index does not take the new file: the next refresh loads it (not
        # held meanwhile by a run that has no more use for it).
        t = self._timed("index_seconds", t)
        data, checksum = writer.finish()
        repo.write_manifest(meta.id, data)
        del data
        t = self._timed("manifest_seconds", t)

        c = self.counts
        stats = meta.stats
        stats.bytes_read = state.bytes_read
        stats.bytes_stored = state.bytes_stored
        stats.chunks_new = state.chunks_new
        stats.chunks_reused = state.chunks_reused
        stats.chunks_total = len(self.referenced)
        stats.files_new = c["new"]
        stats.files_changed = c["changed"]
        stats.files_unchanged = c["unchanged"]
        stats.files_removed = max(0, self.ref_files - c["seen_ref"])
        stats.dirs_count = c["dirs"]
        stats.symlinks_count = c["links"]
        stats.warnings = self.warnings
        stats.left_out = [base64.b64encode(rel).decode() for rel in self.left_out]
        stats.left_out_more = self.left_out_more
        stats.bytes_new_raw = state.bytes_new_raw
        stats.dedup_ratio = _ratio(state.bytes_read, state.bytes_new_raw)
        stats.compression_ratio = _ratio(state.bytes_new_raw, state.bytes_stored)
        meta.size_bytes = c["size"]
        meta.files_count = c["files"]
        meta.checksum = checksum
        meta.status = BackupStatus.VALIDATING
        repo.write_metadata(meta)

        ctx.set_phase("validating")
        if mf.checksum(repo.read_manifest(meta.id)) != checksum:
            raise Damaged("the manifest read back does not match what was written")
        unindexed = self.referenced - repo.index.entries.keys()
        for _pack_id, records in state.new_packs:  # what the run's own index file holds
            unindexed.difference_update(record_digests(records))
        state.new_packs.clear()
        missing = len(unindexed)
        if missing:
            raise Damaged(f"{missing} chunks referenced by the backup are not indexed")
        self._timed("validate_seconds", t)
        stats.phases = self._phases(state)

        elapsed = time.monotonic() - started
        stats.duration_seconds = round(elapsed, 3)
        stats.throughput_bytes_per_second = round(stats.bytes_read / elapsed, 1) if elapsed else 0.0
        meta.status = BackupStatus.COMPLETED
        meta.completed_at = ctx.clock()
        repo.write_metadata(meta)
        ctx.finish(files=meta.files_count, nbytes=meta.size_bytes)
        return meta

    def _phases(self, state: RunState) -> PhaseTimings:
        """The sequential phases' wall times and the reader threads' summed times. Chunking
        and hashing is what remains of the readers' busy time once reading, compressing and
        storing are taken out (they run inside it)."""
        clocks = list(state.clocks.values())
        read = sum(c.read for c in clocks)
        compress = sum(c.compress for c in clocks)
        store = sum(c.store for c in clocks)
        busy = sum(c.busy for c in clocks)
        w = self.walls
        return PhaseTimings(
            scan_seconds=round(w.get("scan_seconds", 0.0), 6),
            read_seconds=round(read, 6),
            chunk_hash_seconds=round(max(0.0, busy - read - compress - store), 6),
            compress_seconds=round(compress, 6),
            store_seconds=round(store + w.get("store_seconds", 0.0), 6),
            index_seconds=round(w.get("index_seconds", 0.0), 6),
            manifest_seconds=round(w.get("manifest_seconds", 0.0), 6),
            validate_seconds=round(w.get("validate_seconds", 0.0), 6),
            read_pass_seconds=round(w.get("read_pass_seconds", 0.0), 6),
            workers=self.workers,
        )


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def run_backup(
    repo: Repository, meta: BackupMetadata, plan: BackupPlan, ctx: OperationContext, log: Log
) -> BackupMetadata:
    """Carry out a backup whose PENDING metadata exists; returns the COMPLETED metadata."""
    return BackupRun(repo, meta, plan, ctx, log).run()


def _done(job: Future | None) -> bool:
    return job is None or job.done()


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, NexusError):
        return str(exc)
    if isinstance(exc, OSError):
        from core.errors import describe_os_error

        return describe_os_error(exc)
    return f"{type(exc).__name__}: {exc}"
