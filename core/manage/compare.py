"""Comparing and searching backups without restoring them (issue 17): diff, find, ls, cat, dump.

`Comparing` is mixed into `BackupManager`: each operation opens the project as every reader
does (never writing, invariant 3), reads a backup's manifest only once it is known complete
and checked against its checksum, and reads file contents through `Repository.read_blobs`
(every chunk checked against its hash), the path a restore reads by, so encrypted and remote
repositories serve them alike. Reads of contents (cat, dump) hold the project's shared lock
while they stream, so a delete cannot reclaim a pack under them.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, BinaryIO

from core.compare_names import DIFF_LIMIT, FIND_LIMIT, LIVE, b64_of, text_of
from core.display import fs_text
from core.errors import Conflict, Damaged, InvalidInput, NexusError, NotFound, WrongPassword
from core.manage.locking import reading
from core.models import RESTORABLE, BackupMetadata
from core.ops.entries import entry_fields
from core.repo import manifest as mf
from core.validator import load_checked_manifest

if TYPE_CHECKING:  # the models and tarfile are imported by the operations that return them:
    import tarfile  # every command imports the engine, few compare backups

    from core.compare import DiffChange, DiffResult, DiffRun, FindResult, LsEntry, LsResult
    from core.ops.find import Pattern
    from core.repo.repository import Repository

MAX_WARNINGS = 100


def backup_path(path: str) -> bytes:
    """A path inside a backup as given by a user ("", "/", "a/b/", with any bytes as
    surrogate escapes) as the manifest stores it: b"/"-separated, no leading or trailing
    slash. "." and ".." components are refused: a backup holds neither."""
    raw = os.fsencode(path).strip(b"/")
    if b"\0" in raw:
        raise InvalidInput("a path cannot hold a NUL byte")
    parts = [p for p in raw.split(b"/") if p]
    if any(p in (b".", b"..") for p in parts):
        raise InvalidInput(f"{path!r}: '.' and '..' are not names inside a backup")
    return b"/".join(parts)


def _inside(prefix: bytes, path: bytes) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + b"/")


def ls_entry(e: mf.Entry) -> LsEntry:
    from core.compare import LsEntry

    return LsEntry(
        path=text_of(e.path),
        path_b64=b64_of(e.path),
        name=text_of(e.path.rpartition(b"/")[2]),
        **entry_fields(e),
    )


def _entries(data: bytes, backup_id: str) -> Iterator[mf.Entry]:
    try:
        yield from mf.iter_entries(data)
    except mf.ManifestError as exc:
        raise Damaged(f"backup {backup_id}: {exc}") from exc


class _ChunkStream(io.RawIOBase):
    """A file's bytes as a readable stream over its chunks (for tarfile)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def,override]
        while not self._buf:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._buf = memoryview(piece)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class Comparing:
    """The manager's compare-and-search operations (see the module docstring). Relies on
    the manager's `_repo`, `_resolve_id`, `_local_tops` and `_in_thread`."""

    if TYPE_CHECKING:
        _repo: Callable[..., Repository]
        _resolve_id: Callable[[Repository, str], str]
        _local_tops: Callable[[], list]
        _in_thread: Callable[..., object]

        def project_ids_blocking(self) -> list[str]: ...

    # --- the checked manifest of a complete backup -------------------------------------------

    def _checked(self, repo: Repository, backup_id: str) -> tuple[BackupMetadata, bytes]:
        backup_id = self._resolve_id(repo, backup_id)
        meta = repo.read_metadata(backup_id)
        if meta.status not in RESTORABLE:
            raise Conflict(f"backup {backup_id} is {meta.status.value}: it holds no tree")
        return meta, load_checked_manifest(repo, meta)

    # --- diff --------------------------------------------------------------------------------

    def diff_run_blocking(
        self,
        project_id: str,
        a: str,
        b: str,
        *,
        path: str = "",
        verify_content: bool = False,
    ) -> DiffRun:
        """The diff from backup `a` to backup `b` (or LIVE: the data directory now), streamed."""
        from core.compare import DiffRun
        from core.ops import diff as df  # the comparing machinery: only for a command using it

        if a == LIVE:
            raise InvalidInput("the first backup of a diff cannot be 'live': name a backup")
        repo = self._repo(project_id)
        repo.check_format()
        prefix = backup_path(path)
        meta_a, data_a = self._checked(repo, a)
        warnings: list[str] = []

        def warn(message: str) -> None:
            if len(warnings) < MAX_WARNINGS:
                warnings.append(message)

        if b == LIVE:
            header = mf.read_header(data_a)
            top = self._live_top(repo, header)
            from core.ops.walker import compile_excludes

            differ = df.Differ(prefix=prefix, live_top=top, verify=verify_content, warn=warn)
            new = df.Side.of_entries(
                df.live_entries(
                    top,
                    excludes=compile_excludes(list(header.get("excludes") or [])),
                    skip=self._skip_dirs(),
                    warn=warn,
                )
            )
            b_id = LIVE
        else:
            meta_b, data_b = self._checked(repo, b)
            differ = df.Differ(prefix=prefix, warn=warn)
            new = df.Side.of_manifest(data_b)
            b_id = meta_b.id
        changes = _damage_named(differ.run(df.Side.of_manifest(data_a), new), meta_a.id, b_id)
        return DiffRun(meta_a.id, b_id, changes, differ.totals, warnings)

    def diff_blocking(
        self,
        project_id: str,
        a: str,
        b: str,
        *,
        path: str = "",
        verify_content: bool = False,
        limit: int | None = DIFF_LIMIT,
    ) -> DiffResult:
        """The diff, its changes cut at `limit` (`truncated` then says so; totals stay exact)."""
        from core.compare import DiffResult

        run = self.diff_run_blocking(project_id, a, b, path=path, verify_content=verify_content)
        listed: list[DiffChange] = []
        truncated = False
        for change in run.changes:
            if limit is None or len(listed) < limit:
                listed.append(change)
            else:
                truncated = True
        return DiffResult(
            project_id=project_id,
            a=run.a,
            b=run.b,
            path=text_of(backup_path(path)),
            verify_content=verify_content,
            changes=listed,
            totals=run.totals,
            truncated=truncated,
            warnings=run.warnings,
        )

    async def diff(
        self,
        project_id: str,
        a: str,
        b: str,
        *,
        path: str = "",
        verify_content: bool = False,
        limit: int | None = DIFF_LIMIT,
    ) -> DiffResult:
        return await self._in_thread(  # type: ignore[misc]
            lambda: self.diff_blocking(
                project_id, a, b, path=path, verify_content=verify_content, limit=limit
            )
        )

    def _live_top(self, repo: Repository, header: dict) -> bytes:
        """The data directory the backup read (its manifest's `source`, else the project's)."""
        source = header.get("source") or repo.settings().get("data_dir")
        if not source:
            raise InvalidInput(f"project {repo.project_id!r}: no data directory to compare with")
        top = os.fsencode(source)
        if not os.path.isdir(top):
            raise NotFound(f"the data directory {text_of(top)} is not there any more")
        return top

    def _skip_dirs(self) -> set[tuple[int, int]]:
        """What a backup never walks into: the repositories and the logs, when local."""
        skip = set()
        for top in self._local_tops():
            with contextlib.suppress(OSError):
                st = os.stat(top)
                skip.add((st.st_dev, st.st_ino))
        return skip

    # --- find --------------------------------------------------------------------------------

    def find_blocking(
        self,
        project_id: str | None,
        pattern: str,
        *,
        all_projects: bool = False,
        limit: int = FIND_LIMIT,
    ) -> FindResult:
        """Every completed backup holding a path that matches `pattern`, newest first, in
        `project_id` (or every project with `all_projects`)."""
        from core.compare import FindResult
        from core.ops.find import Finder, Pattern

        try:
            pat = Pattern(pattern)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if all_projects:
            names = self.project_ids_blocking()
        elif project_id is None:
            raise InvalidInput("name a project, or search them all")
        else:
            names = [project_id]
        result = FindResult(pattern=pattern, projects=names)

        def warn(message: str) -> None:
            if len(result.warnings) < MAX_WARNINGS:
                result.warnings.append(message)

        for name in names:
            try:
                repo = self._repo(name)
            except WrongPassword as exc:
                if not all_projects:
                    raise
                warn(f"project {name}: not searched: {exc}")
                continue
            finder = Finder(name, pat, max(0, limit - len(result.hits)), warn)
            metas = [
                m
                for m in repo.list_metadata()[0]
                if m.status in RESTORABLE and m.removed_at is None
            ]
            metas.sort(key=lambda m: (m.created_at, m.id), reverse=True)
            for meta, found in _searched(repo, pat, metas):
                if isinstance(found, list):
                    finder.add_found(meta.id, meta.created_at, found)
                else:
                    warn(f"backup {meta.id}: not searched: {found}")
            result.backups_searched += finder.searched
            result.hits.extend(finder.hits())
            result.truncated = result.truncated or finder.truncated
        return result

    async def find(
        self,
        project_id: str | None,
        pattern: str,
        *,
        all_projects: bool = False,
        limit: int = FIND_LIMIT,
    ) -> FindResult:
        return await self._in_thread(  # type: ignore[misc]
            lambda: self.find_blocking(project_id, pattern, all_projects=all_projects, limit=limit)
        )

    # --- ls ----------------------------------------------------------------------------------

    def ls_blocking(
        self,
        project_id: str,
        backup_id: str,
        path: str = "",
        *,
        recursive: bool = False,
        limit: int | None = None,
    ) -> LsResult:
        """The entries directly below `path` (all below it with `recursive`), in the
        manifest's order; a directory's `size` and `files` count every file below it. A
        file's path lists the file itself."""
        from core.compare import LsResult

        repo = self._repo(project_id)
        meta, data = self._checked(repo, backup_id)
        prefix = backup_path(path)
        depth = prefix.count(b"/") + 1 if prefix else 0
        listed: list[LsEntry] = []
        dirs: dict[bytes, LsEntry] = {}  # listed directories, by path
        found = not prefix
        truncated = False
        for e in _entries(data, meta.id):
            if e.path == prefix:
                found = True
                if e.kind != mf.DIR:
                    listed.append(ls_entry(e))
                    break
                continue
            if not _inside(prefix, e.path):
                if found and prefix:
                    break  # past the subtree (the manifest's order keeps it contiguous)
                continue
            parts = e.path.count(b"/") + 1
            if recursive or parts == depth + 1:
                if limit is not None and len(listed) >= limit:
                    truncated = True
                else:
                    item = ls_entry(e)
                    listed.append(item)
                    if e.kind == mf.DIR:
                        dirs[e.path] = item
            if e.kind == mf.FILE:
                self._count_in(dirs, e, depth, recursive)
        if not found:
            raise NotFound(f"{path!r} is not in backup {meta.id}")
        return LsResult(
            project_id=project_id,
            backup_id=meta.id,
            path=text_of(prefix),
            recursive=recursive,
            entries=listed,
            truncated=truncated,
        )

    @staticmethod
    def _count_in(dirs: dict[bytes, LsEntry], e: mf.Entry, depth: int, recursive: bool) -> None:
        """Adds a file to the size and count of each listed directory above it."""
        parts = e.path.split(b"/")
        lowest = depth + 1
        for n in range(lowest, len(parts)):
            d = dirs.get(b"/".join(parts[:n]))
            if d is not None:
                d.size += e.size
                d.files += 1
            if not recursive:
                break

    async def ls(
        self,
        project_id: str,
        backup_id: str,
        path: str = "",
        *,
        recursive: bool = False,
        limit: int | None = None,
    ) -> LsResult:
        return await self._in_thread(  # type: ignore[misc]
            lambda: self.ls_blocking(project_id, backup_id, path, recursive=recursive, limit=limit)
        )

    # --- cat and dump: contents, read as a restore reads them ---------------------------------

    def _entry_at(self, data: bytes, backup_id: str, prefix: bytes, path: str) -> mf.Entry:
        for e in _entries(data, backup_id):
            if e.path == prefix:
                return e
        raise NotFound(f"{path!r} is not in backup {backup_id}")

    def open_file_blocking(
        self, project_id: str, backup_id: str, path: str
    ) -> tuple[LsEntry, Iterator[bytes]]:
        """A file of a backup: its entry, and its bytes streamed (each chunk checked against
        its hash, the whole against the file's content hash), under the shared lock until
        the stream is exhausted or closed. A directory or symlink is refused."""
        repo = self._repo(project_id)
        meta, data = self._checked(repo, backup_id)
        prefix = backup_path(path)
        if not prefix:
            raise InvalidInput("name a file inside the backup")
        e = self._entry_at(data, meta.id, prefix, path)
        if e.kind == mf.DIR:
            raise InvalidInput(f"{path!r} is a directory in backup {meta.id} (dump reads one)")
        if e.kind == mf.SYMLINK:
            raise InvalidInput(
                f"{path!r} is a symlink in backup {meta.id} (to {text_of(e.target or b'')!r})"
            )
        return ls_entry(e), self._contents(repo, meta.id, e)

    async def open_file(
        self, project_id: str, backup_id: str, path: str
    ) -> tuple[LsEntry, Iterator[bytes]]:
        return await self._in_thread(  # type: ignore[misc]
            lambda: self.open_file_blocking(project_id, backup_id, path)
        )

    def _contents(self, repo: Repository, backup_id: str, e: mf.Entry) -> Iterator[bytes]:
        """The bytes of one file, read under the shared lock (taken at the first read)."""
        with reading(repo, "read", backup_id):
            repo.refresh_index()
            with contextlib.closing(repo.store.reader()) as packs:
                yield from _file_bytes(repo, e, packs)

    def dump_blocking(self, project_id: str, backup_id: str, path: str, out: BinaryIO) -> int:
        """A directory (or one file) of a backup written to `out` as a tar stream (POSIX
        pax): names with any bytes kept exactly, symlinks as symlinks, modes, owners and
        mtimes kept, every chunk checked. Entries are named from the directory's own name
        down (the whole backup: from its top). Returns the entries written."""
        import tarfile

        repo = self._repo(project_id)
        meta, data = self._checked(repo, backup_id)
        prefix = backup_path(path)
        base = prefix.rpartition(b"/")[0]
        cut = len(base) + 1 if base else 0
        found = not prefix
        count = 0
        with (
            reading(repo, "read", meta.id),
            contextlib.closing(repo.store.reader()) as packs,
            tarfile.open(
                fileobj=out,
                mode="w|",
                format=tarfile.PAX_FORMAT,
                encoding="utf-8",
                errors="surrogateescape",
            ) as tar,
        ):
            repo.refresh_index()
            last: bytes | None = None  # the order key of the entry before
            leaf: bytes | None = None  # the entry before, when it is not a directory
            for e in _entries(data, meta.id):
                # A tampered manifest's member beneath a symlink (`evil` -> /etc, then
                # `evil/x`) would make a tar that an extractor following the archive's own
                # links writes outside with. No real manifest holds one, nor an entry out of
                # order (then a leaf's descendants follow it at once, so one look suffices).
                key = mf.order_key(e.path)
                if last is not None and key <= last:
                    raise Damaged(
                        f"backup {meta.id}: manifest entries out of order at {fs_text(e.path)}"
                    )
                if leaf is not None and e.path.startswith(leaf + b"/"):
                    raise Damaged(
                        f"backup {meta.id}: unsafe path in manifest: {fs_text(e.path)} lies "
                        f"beneath {fs_text(leaf)}, which is not a directory"
                    )
                last, leaf = key, (None if e.kind == mf.DIR else e.path)
                if not _inside(prefix, e.path):
                    if found and prefix:
                        break
                    continue
                found = True
                info = _tar_info(e, e.path[cut:])
                if e.kind == mf.FILE:
                    stream = io.BufferedReader(_ChunkStream(_file_bytes(repo, e, packs)))
                    tar.addfile(info, stream)
                else:
                    tar.addfile(info)
                count += 1
            if not found:
                raise NotFound(f"{path!r} is not in backup {meta.id}")
        return count


#: Manifests searched at once by `find`, in threads (one's read can overlap another's search).
FIND_THREADS = 2


def _searched(
    repo: Repository, pattern: Pattern, metas: list[BackupMetadata]
) -> Iterator[tuple[BackupMetadata, list[mf.Entry] | str]]:
    """Each backup (in the order given) with its matching entries, or why it was not
    searched; a few manifests are read and searched ahead in threads, each read once."""
    from core.ops.find import search

    def one(meta: BackupMetadata) -> list[mf.Entry] | str:
        try:
            found = search(pattern, repo.read_manifest(meta.id), meta.checksum)
        except (NexusError, mf.ManifestError, OSError) as exc:
            return str(exc)
        return "its manifest does not match its checksum" if found is None else found

    with ThreadPoolExecutor(FIND_THREADS, thread_name_prefix="nexus-find") as pool:
        pending: deque[tuple[BackupMetadata, Future]] = deque()
        for meta in metas:
            pending.append((meta, pool.submit(one, meta)))
            if len(pending) > FIND_THREADS * 2:
                done, job = pending.popleft()
                yield done, job.result()
        while pending:
            done, job = pending.popleft()
            yield done, job.result()


def _tar_info(e: mf.Entry, name: bytes) -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(os.fsdecode(name))  # exact: tarfile writes the bytes back
    info.mode = e.mode & 0o7777
    seconds, ns = divmod(e.mtime_ns, 1_000_000_000)
    info.mtime = seconds
    if ns:  # exact to the nanosecond (a float would round it): pax's decimal mtime
        info.pax_headers = {"mtime": f"{seconds}.{ns:09d}"}
    info.uid, info.gid = e.uid, e.gid
    if e.kind == mf.DIR:
        info.type = tarfile.DIRTYPE
    elif e.kind == mf.SYMLINK:
        info.type = tarfile.SYMTYPE
        info.linkname = os.fsdecode(e.target or b"")
    else:
        info.size = e.size
    return info


def _file_bytes(repo: Repository, e: mf.Entry, packs: object) -> Iterator[bytes]:
    """A file's chunks in order, each checked by `read_blobs`; the sizes and the whole
    content hash checked too (a manifest that lies about them is damage, named)."""
    import blake3

    h = blake3.blake3()
    total = 0
    try:
        for raw in repo.read_blobs([bytes.fromhex(d) for d, _n in e.chunks], packs):  # type: ignore[arg-type]
            piece = bytes(raw)
            h.update(piece)
            total += len(piece)
            yield piece
    except Damaged as exc:
        raise Damaged(f"{fs_text(e.path)}: {exc}") from exc
    if total != e.size or h.hexdigest() != e.hash:
        raise Damaged(f"{fs_text(e.path)}: content does not match the backup's hash")


def _damage_named(changes: Iterator[DiffChange], a: str, b: str) -> Iterator[DiffChange]:
    try:
        yield from changes
    except mf.ManifestError as exc:
        raise Damaged(f"diff of {a} and {b}: {exc}") from exc
