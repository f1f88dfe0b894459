"""Restoring a backup: validate first, plan, then write each file to a temp name and rename.

Safety rules, in the order they are applied:
- nothing is written before the backup is validated (completed, manifest checksum, every chunk
  present, target writable, enough free space);
- no path leaves the restore directory: manifest paths are checked (no `..`, no absolute
  paths) and no directory of the target that is a symlink is ever written through;
- each file is written to a temp file in its directory, verified against its content hash,
  then renamed over the old one, so a crash leaves whole files only (old or new).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import itertools
import os
import secrets
import shlex
import shutil
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import manifest as mf
from .errors import Cancelled, Damaged, InvalidInput, NexusError, StorageFull, describe_os_error
from .locks import pid_alive
from .manifest import Entry
from .models import MAX_WARNINGS, BackupMetadata, RestoreChange, RestoreRequest, RestoreResult
from .progress import OperationContext
from .repository import PackFiles, Repository
from .validator import file_checksum, missing_chunk_files, validate_restore_point

MAX_CHANGES = 1000
TMP_PREFIX = ".nexus-restore-"
Log = Callable[[str, str], None]
Checkpoint = Callable[[Path], str | None]


@dataclass
class Step:
    entry: Entry | None  # None for a delete
    rel: bytes
    action: str  # create, overwrite, unchanged, metadata, skip, delete
    kind: str
    reason: str | None = None


def _norm(p: str) -> str:
    p = p.strip()
    while p.startswith("./"):
        p = p[2:]
    return p.strip("/")


def select(entries: list[Entry], paths: list[str]) -> list[Entry]:
    """Entries under the given paths or matching the given globs, with their parent dirs."""
    if not paths:
        return entries
    wanted = [_norm(p) for p in paths]
    chosen: set[bytes] = set()
    matched = dict.fromkeys(wanted, False)
    for e in entries:
        text = e.display_path
        for w in wanted:
            if (
                not w
                or text == w
                or text.startswith(w + "/")
                or fnmatch.fnmatchcase(text, w)
                or any(fnmatch.fnmatchcase(a, w) for a in _ancestors(text))
            ):
                chosen.add(e.path)
                matched[w] = True
    missing = [w for w, ok in matched.items() if not ok]
    if missing:
        raise InvalidInput(f"not in the backup: {', '.join(repr(m) for m in missing[:5])}")
    for p in list(chosen):
        parts = p.split(b"/")
        for i in range(1, len(parts)):
            chosen.add(b"/".join(parts[:i]))
    return [e for e in entries if e.path in chosen]


def _ancestors(text: str) -> list[str]:
    parts = text.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _same_content(path: Path, entry: Entry) -> bool:
    try:
        return file_checksum(path) == f"blake3:{entry.hash}"
    except OSError:
        return False


class Restorer:
    def __init__(
        self,
        repo: Repository,
        meta: BackupMetadata,
        req: RestoreRequest,
        ctx: OperationContext,
        log: Log,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.repo = repo
        self.meta = meta
        self.req = req
        self.ctx = ctx
        self.log = log
        self.checkpoint = checkpoint
        self._lock = threading.Lock()
        self.packs: PackFiles | None = None
        self._safe_dirs: set[bytes] = set()
        self.result = RestoreResult(
            project_id=meta.project_id,
            backup_id=meta.id,
            restore_dir=req.restore_dir,
            dry_run=req.dry_run,
        )

    def warn(self, message: str) -> None:
        with self._lock:
            if len(self.result.warnings) < MAX_WARNINGS:
                self.result.warnings.append(message)
        self.log("WARNING", message)

    # --- validation ------------------------------------------------------------------------

    def _target(self) -> Path:
        target = Path(os.path.expanduser(self.req.restore_dir)).absolute()
        if target.exists():
            if not target.is_dir():
                raise InvalidInput(f"restore target {target} exists and is not a directory")
            target = Path(os.path.realpath(target))
        probe = target
        while not os.path.lexists(probe):
            probe = probe.parent
        if not probe.is_dir():
            raise InvalidInput(f"restore target {target}: {probe} is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise NexusError(f"restore target {target}: permission denied")
        return target

    # --- planning --------------------------------------------------------------------------

    def plan(self, target: Path, entries: list[Entry]) -> list[Step]:
        steps: list[Step] = []
        blocked: list[bytes] = []  # dirs we may not enter (a symlink or file sits there)
        policy = self.req.overwrite
        for e in entries:
            if any(e.path.startswith(b + b"/") for b in blocked):
                steps.append(Step(e, e.path, "skip", mf.KIND_NAMES[e.kind], "parent not restored"))
                continue
            path = target / os.fsdecode(e.path)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                steps.append(Step(e, e.path, "create", mf.KIND_NAMES[e.kind]))
                continue
            kind = mf.KIND_NAMES[e.kind]
            if e.kind == mf.DIR:
                if stat.S_ISDIR(st.st_mode):
                    steps.append(Step(e, e.path, "unchanged", kind))
                elif policy == "always":
                    steps.append(Step(e, e.path, "overwrite", kind, "replaces a non-directory"))
                else:
                    blocked.append(e.path)
                    reason = "a symlink is there" if stat.S_ISLNK(st.st_mode) else "a file is there"
                    steps.append(Step(e, e.path, "skip", kind, reason))
                    inside = sum(1 for x in entries if x.path.startswith(e.path + b"/"))
                    self.warn(
                        f"{e.display_path}: not restored ({reason}; --overwrite always replaces"
                        f" it), nor the {inside} entries inside it"
                    )
                continue
            if policy == "never":
                steps.append(Step(e, e.path, "skip", kind, "exists"))
                continue
            if stat.S_ISDIR(st.st_mode) and policy != "always":
                steps.append(Step(e, e.path, "skip", kind, "a directory is there"))
                continue
            if policy == "if-changed":
                same_size = e.kind == mf.FILE and stat.S_ISREG(st.st_mode) and st.st_size == e.size
                if same_size and (st.st_mtime_ns == e.mtime_ns or _same_content(path, e)):
                    same_mode = stat.S_IMODE(st.st_mode) == stat.S_IMODE(e.mode)
                    same_meta = st.st_mtime_ns == e.mtime_ns and same_mode
                    action = "unchanged" if same_meta else "metadata"
                    steps.append(Step(e, e.path, action, kind))
                    continue
                if e.kind == mf.SYMLINK and stat.S_ISLNK(st.st_mode):
                    with contextlib.suppress(OSError):
                        if os.readlink(os.fsencode(path)) == e.target:
                            steps.append(Step(e, e.path, "unchanged", kind))
                            continue
            steps.append(Step(e, e.path, "overwrite", kind))
        if self.req.delete_extra:
            steps.extend(self._extras(target, entries, blocked))
        return steps

    def _extras(self, target: Path, entries: list[Entry], blocked: list[bytes]) -> list[Step]:
        """Files in the target that the backup does not hold, within the restored scope."""
        keep = {e.path for e in entries}
        if self.req.paths:
            dirs = {e.path for e in entries if e.kind == mf.DIR}
            roots = sorted({os.fsencode(_norm(p)) for p in self.req.paths})
            scopes = [r for r in roots if r in dirs]
        else:
            scopes = [b""]
        extras: list[Step] = []
        for scope in scopes:
            base = target / os.fsdecode(scope) if scope else target
            if not base.is_dir() or base.is_symlink():
                continue
            for dirpath, dirs, files in os.walk(os.fsencode(base)):
                rel_dir = os.path.relpath(dirpath, os.fsencode(target))
                rel_dir = b"" if rel_dir == b"." else rel_dir
                for name in sorted(files) + sorted(
                    d for d in dirs if os.path.islink(os.path.join(dirpath, d))
                ):
                    rel = rel_dir + b"/" + name if rel_dir else name
                    if rel not in keep and not name.startswith(TMP_PREFIX.encode()):
                        extras.append(Step(None, rel, "delete", "file"))
                gone = []
                for d in dirs:
                    rel = rel_dir + b"/" + d if rel_dir else d
                    full = os.path.join(dirpath, d)
                    if os.path.islink(full) or rel in blocked:
                        gone.append(d)
                    elif rel not in keep:
                        extras.append(Step(None, rel, "delete", "dir"))
                        gone.append(d)
                for d in gone:
                    dirs.remove(d)
        return extras

    # --- execution -------------------------------------------------------------------------

    def run(self) -> RestoreResult:
        started = time.monotonic()
        ctx = self.ctx
        ctx.set_phase("validating")
        entries = select(validate_restore_point(self.repo, self.meta), self.req.paths)
        self._check_chunks(entries)
        target = self._target()
        self.result.restore_dir = str(target)
        steps = self.plan(target, entries)
        self._record(steps)
        to_write = [s for s in steps if s.action in ("create", "overwrite") and s.kind == "file"]
        need = sum(s.entry.size for s in to_write if s.entry)
        if not self.req.dry_run:
            probe = target
            while not probe.exists():
                probe = probe.parent
            free = shutil.disk_usage(probe).free
            if need > free:
                raise StorageFull(f"restore target {target}: needs {need} bytes, only {free} free")
        if self.req.dry_run:
            self.result.duration_seconds = round(time.monotonic() - started, 3)
            ctx.finish()
            return self.result

        destructive = any(s.action in ("overwrite", "delete") for s in steps)
        if (
            self.req.checkpoint
            and self.checkpoint is not None
            and destructive
            and target.is_dir()
            and any(target.iterdir())
        ):
            ctx.set_phase("checkpoint")
            checkpoint_id = self.checkpoint(target)
            if checkpoint_id:
                self.result.checkpoint_id = checkpoint_id
                self.result.undo_hint = shlex.join(
                    [
                        "nexus-backup",
                        "--root",
                        str(self.repo.root),
                        "restore",
                        self.meta.project_id,
                        checkpoint_id,
                        str(target),
                        "--overwrite",
                        "always",
                        "--delete",
                        "--no-checkpoint",
                    ]
                )

        target.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files(target, entries)
        ctx.set_phase("restoring", files_total=len(to_write), bytes_total=need)
        try:
            self._execute(target, steps)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StorageFull(describe_os_error(exc, "restore")) from exc
            raise
        self.result.verified = True
        self.result.duration_seconds = round(time.monotonic() - started, 3)
        ctx.finish()
        return self.result

    def _remove_stale_temp_files(self, target: Path, entries: list[Entry]) -> None:
        """Temp files of a restore that was killed (its process is gone) are removed from
        the directories this restore writes to; a live restore's are left alone."""
        dirs = [b""] + [e.path for e in entries if e.kind == mf.DIR]
        base = os.fsencode(target)
        prefix = TMP_PREFIX.encode()
        for rel in dirs:
            if rel and not self._safe_parent(target, rel + b"/x"):
                continue
            path = os.path.join(base, rel) if rel else base
            try:
                with os.scandir(path) as it:
                    names = [d.name for d in it if d.name.startswith(prefix)]
            except OSError:
                continue
            for name in names:
                pid_text = name[len(prefix) :].split(b"-", 1)[0]
                if pid_text.isdigit() and pid_alive(int(pid_text)):
                    continue
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(path, name))

    def _check_chunks(self, entries: list[Entry]) -> None:
        bad = missing_chunk_files(self.repo, entries)
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise Damaged(f"chunks are missing for {', '.join(bad[:5])}{more}")

    def _record(self, steps: list[Step]) -> None:
        r = self.result
        for s in steps:
            if len(r.changes) >= MAX_CHANGES:
                r.changes_truncated = True
                break
            if s.action == "unchanged" and s.kind == "dir":
                continue
            r.changes.append(
                RestoreChange(
                    path=s.rel.decode("utf-8", "backslashreplace"),
                    action=s.action,  # type: ignore[arg-type]
                    kind=s.kind,  # type: ignore[arg-type]
                    size=s.entry.size if s.entry and s.entry.kind == mf.FILE else 0,
                    reason=s.reason,
                )
            )
        for s in steps:
            if s.kind == "file" and s.action == "unchanged":
                r.files_unchanged += 1
            elif s.action == "skip":
                r.files_skipped += 1

    def _safe_parent(self, target: Path, rel: bytes) -> bool:
        """True when every directory between the target and `rel` is a real directory
        (checked once per directory and restore; the restore itself makes them)."""
        parts = rel.split(b"/")[:-1]
        path = os.fsencode(target)
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            prefix = b"/".join(parts[: i + 1])
            if prefix in self._safe_dirs:
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(st.st_mode):
                return False
            with self._lock:
                self._safe_dirs.add(prefix)
        return True

    def _execute(self, target: Path, steps: list[Step]) -> None:
        ctx = self.ctx
        # Directories first, in order (parents before children).
        for s in steps:
            if s.entry is None or s.entry.kind != mf.DIR or s.action not in ("create", "overwrite"):
                continue
            ctx.check()
            path = os.path.join(os.fsencode(target), s.rel)
            if not self._safe_parent(target, s.rel):
                self.warn(f"{s.rel.decode('utf-8', 'replace')}: not restored: unsafe parent")
                continue
            if s.action == "overwrite":
                _remove(path)
            os.mkdir(path, 0o700)
            self.result.dirs_created += 1

        files = [
            s
            for s in steps
            if s.entry is not None
            and s.entry.kind == mf.FILE
            and s.action in ("create", "overwrite", "metadata")
        ]
        self._write_files(target, files)

        for s in steps:
            if (
                s.entry is None
                or s.entry.kind != mf.SYMLINK
                or s.action not in ("create", "overwrite")
            ):
                continue
            ctx.check()
            self._restore_symlink(target, s)

        for s in sorted(
            (s for s in steps if s.action == "delete"), key=lambda s: s.rel, reverse=True
        ):
            ctx.check()
            path = os.path.join(os.fsencode(target), s.rel)
            if self._safe_parent(target, s.rel):
                _remove(path)
                self.result.files_deleted += 1

        # Directory modes and times last, deepest first (writing inside changes mtime).
        dirs = [
            s
            for s in steps
            if s.entry is not None and s.entry.kind == mf.DIR and s.action != "skip"
        ]
        for s in sorted(dirs, key=lambda s: s.rel.count(b"/"), reverse=True):
            path = os.path.join(os.fsencode(target), s.rel)
            if not self._safe_parent(target, s.rel) or os.path.islink(path):
                continue
            self._apply_meta(path, s.entry)  # type: ignore[arg-type]

    def _apply_meta(self, path: bytes, e: Entry) -> None:
        with contextlib.suppress(OSError):
            if os.geteuid() == 0:
                os.chown(path, e.uid, e.gid, follow_symlinks=False)
        if e.kind != mf.SYMLINK:
            os.chmod(path, stat.S_IMODE(e.mode))
        os.utime(path, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)

    def _write_files(self, target: Path, files: list[Step]) -> None:
        """Write the files with a pool of threads. A large file is split into parts written
        at their offsets by several threads at once (one big checkpoint would otherwise be
        restored by one core); a bounded number of jobs is in flight."""
        ctx = self.ctx
        workers = max(2, min(8, (os.cpu_count() or 2) * 2))
        slots = threading.BoundedSemaphore(workers * 4)
        failures: list[BaseException] = []

        def submit(pool: ThreadPoolExecutor, job: Callable[[], None]) -> None:
            slots.acquire()

            def done(future: Future[None]) -> None:
                slots.release()
                exc = future.exception() if not future.cancelled() else None
                if exc is not None:
                    failures.append(exc)
                    ctx.cancel.set()

            pool.submit(job).add_done_callback(done)

        with (
            PackFiles(self.repo.store) as self.packs,
            ThreadPoolExecutor(workers, thread_name_prefix="nexus-restore") as pool,
        ):
            try:
                for s in files:
                    if failures:
                        break
                    ctx.check()
                    for job in self._file_jobs(target, s):
                        submit(pool, job)
            except BaseException:
                ctx.cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        if failures:
            real = [f for f in failures if not isinstance(f, Cancelled)]
            raise (real or failures)[0]

    def _file_jobs(self, target: Path, s: Step) -> list[Callable[[], None]]:
        e = s.entry
        assert e is not None
        show = s.rel.decode("utf-8", "backslashreplace")
        final = os.path.join(os.fsencode(target), s.rel)
        if not self._safe_parent(target, s.rel):
            self.warn(f"{show}: not restored: a parent directory is missing or a symlink")
            return []
        if s.action == "metadata":
            return [lambda: self._apply_meta(final, e)]
        job = _FileJob(self, s, final, show)
        if e.size < SPLIT_SIZE or len(e.chunks) < 2:
            return [job.whole]
        job.open()
        parts: list[Callable[[], None]] = []
        offset = 0
        group: list[tuple[str, int, int]] = []
        size = 0
        for digest_hex, n in e.chunks:
            group.append((digest_hex, n, offset))
            offset += n
            size += n
            if size >= PART_SIZE:
                parts.append(job.part(group))
                group, size = [], 0
        if group:
            parts.append(job.part(group))
        job.parts_left = len(parts)
        return parts

    def _read(self, digest_hex: str, show: str) -> bytes:
        try:
            return self.repo.read_blob(bytes.fromhex(digest_hex), self.packs)
        except Damaged as exc:
            raise Damaged(f"{show}: {exc}") from exc

    def _wrote(self, e: Entry) -> None:
        self.ctx.advance(files=1)
        with self._lock:
            self.result.files_written += 1
            self.result.bytes_written += e.size

    def _restore_symlink(self, target: Path, s: Step) -> None:
        e = s.entry
        assert e is not None and e.target is not None
        if not self._safe_parent(target, s.rel):
            self.warn(f"{s.rel.decode('utf-8', 'replace')}: not restored: unsafe parent")
            return
        final = os.path.join(os.fsencode(target), s.rel)
        tmp = _tmp_name(os.path.dirname(final))
        os.symlink(e.target, tmp)
        try:
            self._apply_meta(tmp, e)
            if os.path.isdir(final) and not os.path.islink(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.result.symlinks_created += 1


def _remove(path: bytes) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


SPLIT_SIZE = 16 * 1024 * 1024  # files at least this large are written by several threads
PART_SIZE = 8 * 1024 * 1024
_tmp_names = itertools.count()
_RUN = secrets.token_hex(3)  # a crashed run's leftovers never collide with a new name


def _tmp_name(parent: bytes) -> bytes:
    """`.nexus-restore-<pid>-<run>-<n>`: the pid tells a killed restore's leftovers."""
    name = f"{TMP_PREFIX}{os.getpid()}-{_RUN}-{next(_tmp_names)}"
    return os.path.join(parent, name.encode())

    return True


class _FileJob:
    """One file being restored: a temp file beside the target, filled with chunks each
    checked against its BLAKE3 hash (the manifest, itself checked against the backup's
    checksum, lists them in order), then given its mode and times and renamed over the
    target. A failure removes the temp file and leaves the target as it was."""

    def __init__(self, restorer: Restorer, step: Step, final: bytes, show: str) -> None:
        self.r = restorer
        self.step = step
        self.entry = step.entry
        self.final = final
        self.show = show
        self.tmp = _tmp_name(os.path.dirname(final))
        self.fd = -1
        self.parts_left = 0
        self.failed = False
        self.lock = threading.Lock()

    def open(self, *, presize: bool = True) -> None:
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        if presize:  # parts are written at their offsets, in any order
            try:
                os.ftruncate(self.fd, self.entry.size)
            except BaseException:
                self._discard()
                raise

    def whole(self) -> None:
        ctx = self.r.ctx
        ctx.check()
        self.open(presize=False)
        try:
            written = 0
            for digest_hex, _n in self.entry.chunks:
                ctx.check()
                raw = self.r._read(digest_hex, self.show)
                _pwrite_all(self.fd, raw, written)
                written += len(raw)
                ctx.advance(nbytes=len(raw), path=self.show)
            if written != self.entry.size:
                raise Damaged(f"{self.show}: restored size does not match the backup")
            self._finish()
        except BaseException:
            self._discard()
            raise

    def part(self, group: list[tuple[str, int, int]]) -> Callable[[], None]:
        def run() -> None:
            ctx = self.r.ctx
            try:
                if self.failed:
                    return
                for digest_hex, n, offset in group:
                    ctx.check()
                    raw = self.r._read(digest_hex, self.show)
                    if len(raw) != n:
                        raise Damaged(f"{self.show}: a chunk has the wrong size")
                    _pwrite_all(self.fd, raw, offset)
                    ctx.advance(nbytes=n, path=self.show)
            except BaseException:
                self.failed = True
                self._part_done()
                raise
            self._part_done()

        return run

    def _part_done(self) -> None:
        with self.lock:
            self.parts_left -= 1
            last = self.parts_left == 0
        if not last:
            return
        if self.failed:
            self._discard()
            return
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise

    def _finish(self) -> None:
        os.close(self.fd)
        self.fd = -1
        self.r._apply_meta(self.tmp, self.entry)
        final = self.final
        if self.step.action == "overwrite" and os.path.isdir(final) and not os.path.islink(final):
            shutil.rmtree(final)
        os.replace(self.tmp, final)
        self.r._wrote(self.entry)

    def _discard(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
