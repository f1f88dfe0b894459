"""Restoring a backup: validate first, plan, then write each file to a temp name and rename.

Safety rules, in the order they are applied:
- nothing is written before the backup is validated (completed, manifest checksum, every chunk
  present, target writable, enough free space);
- no path leaves the restore directory: manifest paths are checked (no `..`, no absolute
  paths), the target is opened once and every directory below it through its parent's
  descriptor without following a symlink (`confine.DirFds`), and every create, rename,
  delete and metadata change is made relative to such a descriptor: a directory swapped for
  a symlink mid-restore is refused, never written through;
- nothing is deleted or replaced that is, or holds, a protected directory (the repository,
  the nexus root), and `--delete` never removes what the backup excluded (rsync's rule);
- the plan is the truth: its exact counts are the preview, the checkpoint is taken when it
  overwrites or deletes anything, and execution does no more than it says;
- each file is written to a temp file in its directory (chunks each checked against their
  hash), given its owner, xattrs, mode and times through its descriptor, then renamed over
  the old one, so a crash leaves whole files only (old or new); every temp file is removed
  on any exit, and a later restore removes those of a killed one. A file the restore
  creates (nothing at its name) is a nameless inode instead where the system allows it
  (`restore_anon`), linked under its name once whole: no temp name to remove at all. A
  creation never replaces what took its name after the plan (`_place`).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fnmatch
import itertools
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from core.compare_names import b64_of, text_of
from core.display import fs_text
from core.errors import (
    Damaged,
    InvalidInput,
    NexusError,
    StorageFull,
    describe_os_error,
    storage_full,
)
from core.gil import quick_handoffs
from core.models import (
    MAX_LEFT_OUT,
    MAX_WARNINGS,
    BackupMetadata,
    DamagedFile,
    RestoreChange,
    RestoreCounts,
    RestoreRequest,
    RestoreResult,
    RestoreUndo,
)
from core.ops import confine, restore_anon, walker
from core.ops.progress import OperationContext
from core.pipeline import Pipeline
from core.repo import manifest as mf
from core.repo import marker
from core.repo.chunker import hash_fd
from core.repo.locks import pid_alive
from core.repo.manifest import Entry
from core.repo.repository import Repository
from core.storage import RangeReader
from core.validator import missing_chunk_files, validate_restore_point

MAX_CHANGES = 1000
TMP_PREFIX = ".nexus-restore-"
Log = Callable[[str, str], None]
#: Takes a checkpoint of the target (its path and its open directory descriptor, to back it
#: up through); returns the checkpoint's backup id.
Checkpoint = Callable[[Path, int], str | None]

FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
REPLACES_DIR = "replaces a directory"
REPLACES_NON_DIR = "replaces a non-directory"
PROTECTED = "a backup repository is there"
HOLDS_PROTECTED = "a directory holding a backup repository is there"
PASSWORD_FILE = "the file the project's password was read from is there"
HOLDS_PASSWORD_FILE = "a directory holding the file the project's password was read from is there"
HOLDS_EXCLUDED = "a directory holding excluded paths is there"
MOUNT_POINT = "a mount point is there"
#: An existing directory `--overwrite never` leaves as it is: its mode, owner and times too.
KEPT = "exists"
HOLDS_MOUNT = "a directory holding a mount point is there"
#: Errors that refuse one entry of the target (an immutable file, a read-only mount or a
#: directory this user may not write inside it, a busy file): that entry is not restored,
#: said as a warning (exit 3), and the restore goes on. Any other error (a full disk, a
#: failed read) ends the restore.
_REFUSED_HERE = frozenset({errno.EPERM, errno.EACCES, errno.EROFS, errno.EBUSY, errno.ETXTBSY})


def _refuse_delete_above_source(target: Path, source: object) -> None:
    """--delete into a directory that holds the backup's source (its parent, `/`, a home)
    would remove everything beside the source: the easy slip of naming the parent for the
    directory itself. Refused, whatever exists there; a restore into the source itself,
    or anywhere else, is not."""
    if not isinstance(source, str) or not source.startswith("/"):
        return
    src = os.path.normpath(source)
    top = os.path.normpath(str(target))
    if src != top and (top == "/" or src.startswith(top + "/")):
        raise InvalidInput(
            f"restore target {top} holds the backup's source {src}: --delete would remove "
            f"everything in it beside that; restore into {src}, or leave out --delete"
        )


def _within_any(rel: bytes, tops: frozenset[bytes]) -> bool:
    """Whether `rel` is one of `tops` or lies beneath one."""
    if not tops:
        return False
    while rel:
        if rel in tops:
            return True
        rel = rel.rpartition(b"/")[0]
    return False


def _refused_here(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _REFUSED_HERE


TAKEN_MEANWHILE = "something took its name after the plan (left as it is)"


def _place(dir_fd: int, tmp: bytes, name: bytes, *, create: bool) -> None:
    """Put a finished temp entry (file or symlink) at its name in `dir_fd`. An overwrite
    renames over what is there; a creation never replaces anything (invariant 5): the plan
    saw nothing at the name, so whatever is there now (written while the checkpoint was
    taken) is in no checkpoint and was never shown. It is linked (FileExistsError when the
    name was taken since the plan), then the temp name is removed; on a filesystem without
    hard links (FAT), renamed after a look that nothing is there."""
    if not create:
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    try:
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        with contextlib.suppress(FileNotFoundError):
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            raise FileExistsError(errno.EEXIST, "exists", name) from None
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)


#: What link(2) says where the filesystem has no hard links (or none for this file).
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK})


UNINDEXED = "damaged in the repository: chunks of it are in no index file (check says more)"
CANNOT_KEEP = (
    "what is there cannot be kept in the checkpoint first (a special file, unreadable, or a "
    "path too long for the system)"
)


@dataclass(slots=True)
class Step:
    entry: Entry | None  # None for a delete
    rel: bytes
    action: str  # create, overwrite, unchanged, metadata, skip, delete
    kind: str
    reason: str | None = None
    link: bytes | None = None  # a hard link to this path (restored in this same restore)
    inside: tuple[int, int] = (0, 0)  # files and dirs removed with a directory this replaces


def _kind_of(mode: int) -> str:
    """What a non-directory the target holds is, as a preview names it: a fifo, socket or
    device is "special", never "file" (I5: the preview names what is deleted as it is)."""
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file" if stat.S_ISREG(mode) else "special"


def _norm(p: str) -> str:
    p = p.strip()
    while p.startswith("./"):
        p = p[2:]
    return p.strip("/")


def _split(rel: bytes) -> tuple[bytes, bytes]:
    parent, _, name = rel.rpartition(b"/")
    return parent, name


_show = fs_text  # a path in a message: the one decode policy (core.display)


# --- selection -------------------------------------------------------------------------------

_GLOB = re.compile(r"[*?\[]")


class _Globs:
    """The glob patterns of a selection, bucketed by their literal start (the text before the
    first wildcard): an entry is only tried against the buckets its path starts with, each
    bucket one compiled regex whose alternatives are named groups (a match tells which
    pattern it was). A pattern only ever matched where an earlier one of its bucket also
    matched is tried alone, once, before being called missing (`_recheck`)."""

    def __init__(self, globs: list[str]) -> None:
        self.globs = globs
        grouped: dict[str, list[int]] = {}
        for i, g in enumerate(globs):
            m = _GLOB.search(g)
            grouped.setdefault(g[: m.start()] if m else g, []).append(i)
        self._buckets = {
            prefix: re.compile(
                "|".join(f"(?P<_w{i}>{fnmatch.translate(globs[i])})" for i in members)
            ).match
            for prefix, members in grouped.items()
        }
        self._lengths = sorted({len(p) for p in grouped})

    def which(self, text: str) -> int | None:
        """The index of a pattern matching `text` (-1: one, unknown), None when none does."""
        for n in self._lengths:
            if n > len(text):
                break
            match = self._buckets.get(text[:n])
            if match is None:
                continue
            m = match(text)
            if m is not None:
                name = m.lastgroup or ""
                return int(name[2:]) if name.startswith("_w") else -1
        return None


def select(entries: list[Entry], paths: list[str]) -> list[Entry]:
    """Entries under the given paths or matching the given globs (an entry matches when it
    or one of its ancestors does), with their parent dirs. Literal paths are looked up in a
    set, globs matched by one compiled regex: many thousands of paths stay fast."""
    if not paths:
        return entries
    wanted = list(dict.fromkeys(_norm(p) for p in paths))
    literal = set(wanted)
    globs = _Globs([w for w in wanted if _GLOB.search(w)])
    matched: set[str] = set()
    everything = "" in literal
    if everything:
        matched.add("")
    covered: dict[str, bool] = {}  # directory text -> it or an ancestor matched
    chosen: set[bytes] = set()
    for e in entries:
        text = e.display_path
        hit = everything or _match_one(text, literal, globs, matched)
        if not hit:
            parent = text.rpartition("/")[0]
            if parent:
                up = covered.get(parent)
                hit = up if up is not None else _ancestor_matches(text, literal, globs, matched)
        if e.kind == mf.DIR:
            covered[text] = hit
        if hit:
            chosen.add(e.path)
    missing = [w for w in wanted if w not in matched]
    if missing:
        missing = _recheck(missing, globs, entries, matched)
    if missing:
        raise InvalidInput(f"not in the backup: {', '.join(repr(m) for m in missing[:5])}")
    for p in list(chosen):
        parts = p.split(b"/")
        for i in range(1, len(parts)):
            chosen.add(b"/".join(parts[:i]))
    return [e for e in entries if e.path in chosen]


def _match_one(text: str, literal: set[str], globs: _Globs, matched: set[str]) -> bool:
    if text in literal:
        matched.add(text)
        return True
    i = globs.which(text)
    if i is None:
        return False
    if i >= 0:
        matched.add(globs.globs[i])
    return True


def _ancestor_matches(text: str, literal: set[str], globs: _Globs, matched: set[str]) -> bool:
    """For an entry whose parent is not itself an entry (a hand-built manifest)."""
    parts = text.split("/")
    hit = False
    for i in range(1, len(parts)):
        hit = _match_one("/".join(parts[:i]), literal, globs, matched) or hit
    return hit


def _recheck(
    missing: list[str], globs: _Globs, entries: list[Entry], matched: set[str]
) -> list[str]:
    """Globs never reported by the combined regex (shadowed by an earlier one) tried alone."""
    still = []
    texts: set[str] | None = None
    for w in missing:
        if not _GLOB.search(w):
            still.append(w)
            continue
        if texts is None:
            texts = {e.display_path for e in entries}
        rx = re.compile(fnmatch.translate(w)).match
        if any(rx(t) for t in texts):
            matched.add(w)
        else:
            still.append(w)
    return still


def _is_zero(raw: bytes | memoryview) -> bool:
    """A chunk of zeros only (left as a hole: the file is sized by ftruncate). The end bytes
    are looked at first, so other data costs no scan."""
    return not raw or (raw[0] == 0 and raw[-1] == 0 and bytes(raw).count(0) == len(raw))


def _dev_ino(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _stores(repo: Repository) -> list[Path]:
    """Where repositories' files live (`{root}/backups`, this project's store): never a
    restore target, nor beneath one."""
    out = [Path(repo.root) / "backups"]
    if repo.store.capabilities.local_root is not None:
        out.append(Path(repo.store.capabilities.local_root))
    return out


# Temp files of the restores running in this process (names are unique per process): a
# restore removes its own pid's leftovers unless they are in this set.
_LIVE: set[bytes] = set()
_LIVE_LOCK = threading.Lock()
_tmp_names = itertools.count()
_RUN = secrets.token_hex(3)  # a crashed run's leftovers never collide with a new name


#: A directory opened where a path's symlinks lead (as `mkdir -p` follows them).
_FOLLOWED_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _tmp_name() -> bytes:
    """`.nexus-restore-<pid>-<run>-<n>`: the pid tells a killed restore's leftovers."""
    return f"{TMP_PREFIX}{os.getpid()}-{_RUN}-{next(_tmp_names)}".encode()


class Restorer:
    def __init__(
        self,
        repo: Repository,
        meta: BackupMetadata,
        req: RestoreRequest,
        ctx: OperationContext,
        log: Log,
        checkpoint: Checkpoint | None = None,
        protect: frozenset[tuple[int, int]] = frozenset(),
        stores: frozenset[tuple[int, int]] = frozenset(),
        keep_files: frozenset[tuple[int, int]] = frozenset(),
    ) -> None:
        self.repo = repo
        self.meta = meta
        self.req = req
        self.ctx = ctx
        self.log = log
        self.checkpoint = checkpoint
        #: (st_dev, st_ino) of the directories a target may neither be nor lie inside: every
        #: directory of the repositories and the logs (the caller's `stores`), and this
        #: project's own store and `{root}/backups` always.
        self.stores = frozenset(stores) | confine.dir_ids(_stores(repo))
        #: (st_dev, st_ino) of directories never deleted, replaced or entered when met in the
        #: target (the repository's own always are: the nexus root and its stores).
        self.protect = frozenset(protect) | self.stores | confine.dir_ids([Path(repo.root)])
        #: (st_dev, st_ino) of files never overwritten or deleted, nor a directory holding
        #: one replaced: those the passwords were read from (a backup's older copy over one
        #: would leave nothing that opens the project, its checkpoint included).
        self.keep_files = keep_files
        #: (st_dev, st_ino) of the target's directories looked at: whether each is another
        #: nexus-backup repository (`_protected`).
        self._foreign: dict[tuple[int, int], bool] = {}
        self._lock = threading.Lock()
        self._euid = os.geteuid()
        #: Files this restore creates are written as nameless inodes and linked whole
        #: (`restore_anon`), while the system allows; else under a temp name, renamed.
        self.anon = restore_anon.supported()
        self._umask = restore_anon.process_umask()
        self.packs: RangeReader | None = None
        self.dirs: confine.DirFds | None = None
        #: What --delete leaves alone: the backup's own excludes and the target's current
        #: `.nexusignore`, each matched on its own (a negation in one never re-includes what
        #: the other excludes).
        self.excludes: list[walker.Excludes] = []
        #: What --delete also leaves alone: the paths the backup saw and could not hold,
        #: and what is beneath them (all of the target, when there were too many to list).
        self.left_out: frozenset[bytes] = frozenset()
        self.left_out_more = False
        self._top_len = 0  # bytes of the target's path, for what the checkpoint can hold
        self._temps: dict[bytes, int] = {}  # temp name -> descriptor of its directory
        self._jobs: set[_FileJob] = set()  # file jobs that may hold a temp file
        self._link_sources: set[bytes] = set()
        self._written: dict[bytes, tuple[str, int, int]] = {}  # rel -> (hash, dev, ino)
        #: Files and bytes written so far, counted here by the writers and put into the
        #: result when they stop (a model's attribute costs a validation per assignment).
        self._files_written = 0
        self._bytes_written = 0
        self._unindexed: set[bytes] = set()  # files whose chunks the index lacks
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

    def damaged(self, rel: bytes, exc: Damaged) -> None:
        """A file whose data in the repository is damaged: not restored (its temp file gone,
        what the target held there left as it was), named in the result, and the rest of
        the restore goes on, as restic's does: one bad pack never costs every other file."""
        show = _show(rel)
        reason = str(exc).removeprefix(f"{show}: ")
        with self._lock:
            self.result.files_damaged += 1
            if len(self.result.damaged_files) < MAX_WARNINGS:
                self.result.damaged_files.append(DamagedFile(path=os.fsdecode(rel), reason=reason))
        if not self.req.dry_run:  # a preview names it in its result, and writes no log
            self.log("ERROR", f"{show}: not restored: its data is damaged ({reason})")

    @property
    def _d(self) -> confine.DirFds:
        assert self.dirs is not None
        return self.dirs

    # --- the target ------------------------------------------------------------------------

    def _target(self) -> Path:
        """The target's absolute path: resolved once (unless confined: then a symlink in it
        is refused by `open_dir_beneath`), checked to be a directory we may write to."""
        target = Path(os.path.expanduser(self.req.restore_dir)).absolute()
        if target.exists():
            if not target.is_dir():
                raise InvalidInput(f"restore target {target} exists and is not a directory")
            if self.req.confine_to is None:
                target = Path(os.path.realpath(target))
        probe = target
        while not os.path.lexists(probe):
            probe = probe.parent
        if not probe.is_dir():
            raise InvalidInput(f"restore target {target}: {probe} is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise NexusError(f"restore target {target}: permission denied")
        return target

    def _open_target(self, target: Path, *, create: bool) -> int | None:
        """The target's descriptor (made first when `create`); None when it does not exist
        and may not be made (a dry run). Refused whole when the target, or the nearest
        directory above it that exists, is or lies inside a repository or the logs (design
        I4): judged from the descriptor then used, before anything is made beneath it."""
        missing: list[bytes] = []  # the components to make, from the target up
        near = target
        while not os.path.lexists(near):
            missing.append(os.fsencode(near.name))
            near = near.parent
        if self.req.confine_to is not None:
            # no symlink below the allowed directory is followed: the nearest existing
            # directory, looked at first, is the one the target is then made in
            look = os.open(near, confine.LOOK)
            try:
                self._refuse_stored(look, target)
            finally:
                os.close(look)
            try:
                return confine.open_dir_beneath(
                    self.req.confine_to, target, what="restore_dir", create=create
                )
            except FileNotFoundError:
                if create:
                    raise
                return None
        try:
            # an existing target was resolved once (`_target`); a missing one is made
            # beneath its nearest existing directory, as `mkdir -p` would find it
            fd = os.open(near, confine.DIR_FLAGS if not missing else _FOLLOWED_DIR)
            try:
                self._refuse_stored(fd, target)
                if missing and not create:
                    os.close(fd)
                    return None
                if missing:
                    rel = b"/".join(reversed(missing))
                    made = confine.open_dir_at(fd, rel, create=True, mode=0o777)
                    os.close(fd)
                    fd = made
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidInput(f"restore target {target} is not a directory") from None
            raise
        return fd

    def _refuse_stored(self, fd: int, target: Path) -> None:
        if confine.lies_in(fd, self.stores, marker.is_project_dir):
            raise InvalidInput(
                f"restore target {target} is inside a backup repository or the logs: refused"
            )

    def _load_excludes(self, header: dict, top: int, target: Path) -> list[walker.Excludes]:
        """What the backup excluded (its manifest header's `excludes`) and what the target's
        current `.nexusignore` excludes: never deleted by `--delete` (rsync's rule)."""
        patterns = header.get("excludes") or []
        if not isinstance(patterns, list):
            patterns = []
        specs = [
            walker.compile_excludes([p for p in patterns if isinstance(p, str)]),
            walker.load_excludes(os.fsencode(target), [], top_fd=top),
        ]
        return [x for x in specs if x is not None]

    def _checkpoint_keeps(
        self, rel: bytes, st: os.stat_result, parent_fd: int | None = None
    ) -> bool:
        """Whether the checkpoint taken before this restore holds this entry of the target,
        so that the printed undo brings it back: the backup walk's own rule (a directory,
        regular file or symlink whose path fits the system's limit) and readable by us. Only
        what it holds is overwritten, replaced or deleted (invariant 4); without a
        checkpoint the caller has chosen to go without one."""
        if not self.req.checkpoint or self.checkpoint is None:
            return True
        if not walker.backs_up(self._top_len, rel, st.st_mode):
            return False
        if self._euid == 0 or stat.S_ISLNK(st.st_mode):
            return True
        want = os.R_OK | (os.X_OK if stat.S_ISDIR(st.st_mode) else 0)
        parent, name = _split(rel)
        try:
            if parent_fd is not None:
                return os.access(name, want, dir_fd=parent_fd)
            with self._d.at(parent) as fd:
                return os.access(name, want, dir_fd=fd)
        except OSError:
            return False

    # --- planning --------------------------------------------------------------------------

    def _lstat(self, parent: bytes, name: bytes) -> os.stat_result | bool | None:
        """The entry `name` of the target's `parent` (None: absent; False: the parent cannot
        be entered, a symlink or file or gone)."""
        try:
            fd = self._d.acquire(parent)
        except OSError:
            return False
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            self._d.release(fd)

    def _empty(self, parent: bytes, seen: dict[bytes, bool]) -> bool:
        """Whether the target's directory `parent` held nothing when first looked at (then
        none of its entries is looked up one by one: each is planned as created, as the
        lookup would have said; a name taken later is left as it is, with a warning, when
        the file is named: `_place`)."""
        got = seen.get(parent)
        if got is None:
            try:
                with self._d.at(parent) as fd, os.scandir(fd) as it:
                    got = next(it, None) is None
            except OSError:
                got = False  # not entered: the lookup says why
            seen[parent] = got
        return got

    def plan(self, entries: list[Entry]) -> list[Step]:
        """What the restore does to each entry and to the target's extras, from the target
        as it is now (read through descriptors; nothing is changed)."""
        steps: list[Step] = []
        fresh: set[bytes] = set()  # dirs the restore makes new: nothing is inside them yet
        empty: dict[bytes, bool] = {}  # dirs of the target -> nothing was in them when planned
        blocked: dict[bytes, bytes] = {}  # dirs not entered -> the one that blocks them
        replaced: set[bytes] = set()  # dirs of the target replaced by a file or symlink
        hashes: list[tuple[Step, os.stat_result]] = []
        inside: Counter[bytes] = Counter()
        for e in entries:
            kind = mf.KIND_NAMES[e.kind]
            parent, name = _split(e.path)
            root = blocked.get(parent)
            if root is not None:
                steps.append(Step(e, e.path, "skip", kind, "parent not restored"))
                inside[root] += 1
                if e.kind == mf.DIR:
                    blocked[e.path] = root
                continue
            st = (
                None
                if self.dirs is None or parent in fresh or self._empty(parent, empty)
                else self._lstat(parent, name)
            )
            if st is False:
                steps.append(Step(e, e.path, "skip", kind, "parent not restored"))
                if e.kind == mf.DIR:
                    blocked[e.path] = e.path
                continue
            if e.path in self._unindexed:
                steps.append(Step(e, e.path, "skip", kind, UNINDEXED))
                self.damaged(e.path, Damaged(UNINDEXED))
                continue
            step = self._plan_entry(e, kind, st if isinstance(st, os.stat_result) else None)
            if (
                step.action == "overwrite"
                and isinstance(st, os.stat_result)
                and not self._checkpoint_keeps(e.path, st)
            ):
                self.warn(f"{_show(e.path)}: not restored ({CANNOT_KEEP})")
                step = Step(e, e.path, "skip", kind, CANNOT_KEEP)
            steps.append(step)
            if e.kind == mf.DIR:
                if step.action in ("create", "overwrite"):
                    fresh.add(e.path)
                elif step.action == "skip":
                    blocked[e.path] = e.path
            elif step.reason == REPLACES_DIR:
                replaced.add(e.path)
            if self._worth_hashing(step, st):
                hashes.append((step, st))  # type: ignore[arg-type]
        for root, n in inside.items():
            if n:
                self.warn(f"{_show(root)}: the {n} entries inside it are not restored either")
        self._compare_contents(hashes)
        self._plan_links(steps)
        if self.req.delete_extra and self.dirs is not None:
            steps.extend(self._extras(entries, fresh, set(blocked), replaced))
        return steps

    def _worth_hashing(self, step: Step, st: object) -> bool:
        """if-changed: an existing regular file of the entry's size may hold its bytes."""
        e = step.entry
        return (
            self.req.overwrite == "if-changed"
            and step.action == "overwrite"
            and step.reason is None
            and e is not None
            and e.kind == mf.FILE
            and isinstance(st, os.stat_result)
            and stat.S_ISREG(st.st_mode)
            and st.st_size == e.size
        )

    def _clash(self, e: Entry, kind: str, reason: str) -> Step:
        """A directory where the backup has a non-directory or the other way round: skipped
        and said (exit 3), since only --overwrite always replaces one by the other."""
        self.warn(f"{_show(e.path)}: not restored ({reason}; --overwrite always replaces it)")
        return Step(e, e.path, "skip", kind, reason)

    def _plan_entry(self, e: Entry, kind: str, st: os.stat_result | None) -> Step:
        rel = e.path
        policy = self.req.overwrite
        if st is None:
            return Step(e, rel, "create", kind)
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and self._protected_at(rel, st):
            self.warn(f"{_show(e.path)}: not restored ({PROTECTED})")
            return Step(e, rel, "skip", kind, PROTECTED)
        if _dev_ino(st) in self.keep_files:
            self.warn(f"{_show(e.path)}: not restored ({PASSWORD_FILE})")
            return Step(e, rel, "skip", kind, PASSWORD_FILE)
        if e.kind == mf.DIR:
            if is_dir:
                return self._existing_dir(e, rel, st)
            if policy == "always":
                return Step(e, rel, "overwrite", kind, REPLACES_NON_DIR)
            reason = "a symlink is there" if stat.S_ISLNK(st.st_mode) else "a file is there"
            return self._clash(e, kind, reason)
        if policy == "never":
            return Step(e, rel, "skip", kind, "exists")
        if is_dir:
            if policy != "always":
                return self._clash(e, kind, "a directory is there")
            parent, name = _split(rel)
            with self._d.at(parent) as fd:
                why, files, dirs = self._survey_tree(fd, name, rel)
            if why:
                self.warn(f"{_show(e.path)}: not restored ({why})")
                return Step(e, rel, "skip", kind, why)
            return Step(e, rel, "overwrite", kind, REPLACES_DIR, inside=(files, dirs))
        if policy == "if-changed" and e.kind == mf.SYMLINK and stat.S_ISLNK(st.st_mode):
            parent, name = _split(rel)
            with contextlib.suppress(OSError), self._d.at(parent) as fd:
                if os.readlink(name, dir_fd=fd) == e.target:
                    return Step(e, rel, "unchanged", kind)
        return Step(e, rel, "overwrite", kind)

    def _existing_dir(self, e: Entry, rel: bytes, st: os.stat_result) -> Step:
        """A directory the target holds where the backup has one. `never` leaves it as it is
        (KEPT: not even its times are set). Otherwise its times are set again at the end
        (writing inside changes them anyway), and when its mode (or, for root, its owner)
        differs it is a "metadata" step: counted and shown in the preview, and a checkpoint
        that can undo it is taken (invariant 5; a private directory made readable again
        must not hide behind "change nothing")."""
        if self.req.overwrite == "never":
            return Step(e, rel, "unchanged", mf.KIND_NAMES[e.kind], KEPT)
        owner = self._euid == 0 and (st.st_uid, st.st_gid) != (e.uid, e.gid)
        if owner or stat.S_IMODE(st.st_mode) != stat.S_IMODE(e.mode):
            return Step(e, rel, "metadata", mf.KIND_NAMES[e.kind])
        return Step(e, rel, "unchanged", mf.KIND_NAMES[e.kind])

    def _compare_contents(self, todo: list[tuple[Step, os.stat_result]]) -> None:
        """if-changed: an existing file of the right size is kept only when its bytes hash to
        the entry's hash (equal size and mtime say nothing about the bytes). Hashed by
        several threads, each file opened through its directory without following a link."""
        if not todo:
            return

        def same(item: tuple[Step, os.stat_result]) -> bool:
            step, _st = item
            try:
                fd = self._open_existing(step.rel)
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):
                        return False
                    return hash_fd(fd, st.st_size) == step.entry.hash  # type: ignore[union-attr]
                finally:
                    os.close(fd)
            except OSError:
                return False

        def batch(items: list[tuple[Step, os.stat_result]]) -> list[bool]:
            return [same(item) for item in items]

        workers = max(1, min(8, os.cpu_count() or 2))
        size = 64  # files per job: a future per small file costs more than hashing it
        batches = [todo[i : i + size] for i in range(0, len(todo), size)]
        if len(batches) == 1:
            results = batch(batches[0])
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="nexus-compare") as pool:
                results = [ok for part in pool.map(batch, batches) for ok in part]
        for (step, st), ok in zip(todo, results, strict=True):
            if not ok:
                continue
            e = step.entry
            assert e is not None
            same_meta = st.st_mtime_ns == e.mtime_ns and stat.S_IMODE(st.st_mode) == stat.S_IMODE(
                e.mode
            )
            if same_meta:
                step.action = "unchanged"
            elif st.st_nlink == 1:
                step.action = "metadata"
            # else: other names share the inode (maybe outside the target): a chmod or chown
            # in place would change them too, so a fresh copy is written over this name

    def _plan_links(self, steps: list[Step]) -> None:
        """The names of one inode (an entry and those whose `link` names it) that this
        restore writes with the same content become hard links to the first of them it
        writes, in manifest order: the inode's first name when it is restored, else the
        first restored of the others (`--path` may leave the first out)."""
        first: dict[bytes, Step] = {}  # the inode's first name -> the name written first
        for s in steps:
            e = s.entry
            if e is None or s.kind != "file" or s.action not in ("create", "overwrite"):
                continue
            group = e.link if e.link is not None else s.rel
            source = first.get(group)
            if source is None:
                first[group] = s
            elif source.entry is not None and source.entry.hash == e.hash:
                s.link = source.rel
                self._link_sources.add(source.rel)

    def _survey_tree(self, dir_fd: int, name: bytes, rel: bytes) -> tuple[str | None, int, int]:
        """Why the directory `name` (at `rel`) may not be removed whole, or None, and the
        files and directories inside it (counted in the preview). It may not when it is or
        holds a protected directory, or holds what the checkpoint cannot keep. The one check
        every removal of a tree goes through. Nor when it is or holds a mount point (what is
        mounted there is not the target's to empty, and the directory cannot be removed), or
        holds a path excluded from the backup (rsync's rule: --delete never removes one)."""
        try:
            fd = os.open(name, confine.DIR_FLAGS, dir_fd=dir_fd)
        except OSError:
            return None, 0, 0  # not a directory (any more): nothing to walk
        top_st = os.fstat(fd)
        if self._protected(dir_fd, name, top_st):
            os.close(fd)
            return PROTECTED, 0, 0
        if top_st.st_dev != os.fstat(dir_fd).st_dev:
            os.close(fd)
            return MOUNT_POINT, 0, 0
        stack, files, dirs = [(fd, rel)], 0, 0
        try:
            while stack:
                cur, cur_rel = stack.pop()
                try:
                    for sub, st in _scan(cur):
                        sub_rel = cur_rel + b"/" + sub
                        if not self._checkpoint_keeps(sub_rel, st, cur):
                            return CANNOT_KEEP, files, dirs
                        is_dir = stat.S_ISDIR(st.st_mode)
                        if self._excluded(sub_rel, is_dir):
                            return HOLDS_EXCLUDED, files, dirs
                        if _dev_ino(st) in self.keep_files:
                            return HOLDS_PASSWORD_FILE, files, dirs
                        if not is_dir:
                            files += 1
                            continue
                        if self._protected(cur, sub, st):
                            return HOLDS_PROTECTED, files, dirs
                        if st.st_dev != top_st.st_dev:
                            return HOLDS_MOUNT, files, dirs
                        dirs += 1
                        with contextlib.suppress(OSError):
                            stack.append((os.open(sub, confine.DIR_FLAGS, dir_fd=cur), sub_rel))
                finally:
                    os.close(cur)
            return None, files, dirs
        finally:
            for left, _r in stack:
                os.close(left)

    def _extras(
        self, entries: list[Entry], fresh: set[bytes], blocked: set[bytes], replaced: set[bytes]
    ) -> list[Step]:
        """What the target holds and the backup does not, within the restored scope: each
        file and symlink, and each directory left empty by that. Never deleted: protected
        directories and what holds them, excluded paths (the backup's excludes and the
        target's `.nexusignore`) and what holds them, temp files of other restores, and a
        mount point the backup holds nothing at (a disk mounted since: what is mounted is
        not the target's to empty, as for a directory replaced whole), said with a warning."""
        keep = {e.path: e.kind for e in entries}
        if self.req.paths:
            dirs = {e.path for e in entries if e.kind == mf.DIR}
            roots = sorted({os.fsencode(_norm(p)) for p in self.req.paths})
            scopes = [r for r in roots if r in dirs]
        else:
            scopes = [b""]
        skip = fresh | blocked | replaced
        files: list[Step] = []
        extra_dirs: list[bytes] = []  # in the order met: parents before children
        held: set[bytes] = set()  # extra dirs that keep something: not deleted
        stack = [s for s in scopes if s not in skip]
        while stack:
            rel_dir = stack.pop()
            prefix = rel_dir + b"/" if rel_dir else b""
            try:
                with self._d.at(rel_dir) as fd:
                    dev = os.fstat(fd).st_dev
                    for name, st in _scan(fd):
                        rel = prefix + name
                        is_dir = stat.S_ISDIR(st.st_mode)
                        if self._kept(fd, name, rel, st, is_dir):
                            held.add(rel_dir)
                            continue
                        if not self._checkpoint_keeps(rel, st, fd):
                            held.add(rel_dir)
                            if rel not in keep:  # said, not left silently (I5)
                                kind = "dir" if is_dir else _kind_of(st.st_mode)
                                files.append(Step(None, rel, "skip", kind, CANNOT_KEEP))
                            continue
                        if rel in keep:
                            if is_dir and keep[rel] == mf.DIR and rel not in skip:
                                stack.append(rel)
                            continue
                        if st.st_dev != dev:  # mounted here, and the backup holds nothing there
                            self.warn(f"{_show(rel)}: not deleted ({MOUNT_POINT})")
                            held.add(rel_dir)
                            continue
                        if is_dir:
                            extra_dirs.append(rel)
                            stack.append(rel)
                        else:
                            files.append(Step(None, rel, "delete", _kind_of(st.st_mode)))
            except OSError:
                held.add(rel_dir)  # cannot be listed: nothing in it is deleted
        out = files
        for rel in reversed(extra_dirs):
            if rel in held:
                held.add(_split(rel)[0])
            else:
                out.append(Step(None, rel, "delete", "dir"))
        return out

    def _protected(self, parent_fd: int, name: bytes, st: os.stat_result) -> bool:
        """Whether the target's directory `name` (`st` its lstat) is never deleted, replaced
        or entered: this run's repositories and root, or any other nexus-backup repository,
        a project or a repository's top, told by what it holds (`core.repo.marker`: this
        process cannot know another root by its inode). The one test the plan, the survey
        of a tree and --delete make of each directory they meet (design I4)."""
        key = _dev_ino(st)
        if key in self.protect:
            return True
        known = self._foreign.get(key)
        if known is None:
            known = self._foreign[key] = marker.is_repository_dir(parent_fd, name)
        return known

    def _protected_at(self, rel: bytes, st: os.stat_result) -> bool:
        parent, name = _split(rel)
        with self._d.at(parent) as fd:
            return self._protected(fd, name, st)

    def _kept(
        self, parent_fd: int, name: bytes, rel: bytes, st: os.stat_result, is_dir: bool
    ) -> bool:
        """An extra of the target that --delete leaves alone unsaid: temp files of other
        restores, protected directories and excluded paths. (What the checkpoint cannot
        hold is left alone too, and said: `_extras`.)"""
        if name.startswith(TMP_PREFIX.encode()):
            return True
        if is_dir and self._protected(parent_fd, name, st):
            return True
        if _dev_ino(st) in self.keep_files:
            return True
        return self._excluded(rel, is_dir)

    def _load_left_out(self) -> None:
        stats = self.meta.stats
        try:
            self.left_out = frozenset(
                base64.b64decode(p, validate=True) for p in stats.left_out or ()
            )
            self.left_out_more = stats.left_out_more
        except ValueError:  # a damaged list tells nothing: nothing is removed
            self.left_out_more = True
        if self.left_out_more and self.req.delete_extra:
            self.warn(
                f"the backup could not hold more than {MAX_LEFT_OUT} of the paths it saw: "
                "--delete removes nothing"
            )

    def _excluded(self, rel: bytes, is_dir: bool) -> bool:
        """Whether the backup's excludes or the target's `.nexusignore` name `rel`, or the
        backup saw it, or a directory holding it, and could not hold it (design I4)."""
        if self.left_out_more or _within_any(rel, self.left_out):
            return True
        text = rel.decode("utf-8", "surrogateescape")
        return any(x.excluded(text, is_dir) for x in self.excludes)

    # --- execution -------------------------------------------------------------------------

    def run(self) -> RestoreResult:
        started = time.monotonic()
        ctx = self.ctx
        ctx.set_phase("validating")
        header, entries = validate_restore_point(self.repo, self.meta, _slim)
        entries = select(entries, self.req.paths)
        self._check_chunks(entries)
        target = self._target()
        if self.req.delete_extra:
            _refuse_delete_above_source(target, header.get("source"))
        self.result.restore_dir = str(target)
        top = self._open_target(target, create=not self.req.dry_run)
        try:
            self._top_len = len(os.fsencode(str(target)))
            if top is not None:
                self.dirs = confine.DirFds(top)
                if self.req.delete_extra or self.req.overwrite == "always":
                    # both remove what the target holds: never what the backup excluded
                    self.excludes = self._load_excludes(header, top, target)
                    self._load_left_out()
            steps = self.plan(entries)
            self._record(steps)
            counts = self.result.counts
            if self.req.dry_run:
                self.result.duration_seconds = round(time.monotonic() - started, 3)
                ctx.finish()
                return self.result
            assert top is not None
            vfs = os.fstatvfs(top)
            free = vfs.f_bavail * vfs.f_frsize
            if counts.bytes_to_write > free:
                need = counts.bytes_to_write
                raise StorageFull(f"restore target {target}: needs {need} bytes, only {free} free")
            self._take_checkpoint(target, top, counts, steps)
            self._remove_stale_temp_files(steps)
            files_total = counts.files_create + counts.files_overwrite
            ctx.set_phase("restoring", files_total=files_total, bytes_total=counts.bytes_to_write)
            try:
                self._execute(steps)
            except OSError as exc:
                if storage_full(exc):
                    raise StorageFull(describe_os_error(exc, "restore")) from exc
                raise
            finally:
                self._sweep_temps()
        finally:
            if self.dirs is not None:
                self.dirs.close()
            if top is not None:
                os.close(top)
        self.result.files_written = self._files_written
        self.result.bytes_written = self._bytes_written
        self.result.verified = not self.result.files_damaged
        self.result.duration_seconds = round(time.monotonic() - started, 3)
        ctx.finish(files=files_total, nbytes=counts.bytes_to_write)
        return self.result

    def _take_checkpoint(
        self, target: Path, top: int, counts: RestoreCounts, steps: list[Step]
    ) -> None:
        """A checkpoint of a non-empty target the plan overwrites or deletes in, so that the
        undo command printed restores what was there."""
        if not (self.req.checkpoint and self.checkpoint is not None and counts.destructive):
            return
        with os.scandir(top) as it:
            if next(it, None) is None:
                return
        self.ctx.set_phase("checkpoint")
        checkpoint_id = self.checkpoint(target, top)
        if not checkpoint_id:
            return
        self.result.checkpoint_id = checkpoint_id
        replaces_types = any(
            s.action == "overwrite" and s.reason in (REPLACES_DIR, REPLACES_NON_DIR) for s in steps
        )
        undo = RestoreUndo.of(
            self.meta.project_id, checkpoint_id, str(target), replaces_types=replaces_types
        )
        self.result.undo = undo
        self.result.undo_hint = undo.command(root=str(self.repo.root))

    def _remove_stale_temp_files(self, steps: list[Step]) -> None:
        """Temp files of a restore that was killed (its process is gone), or of an earlier
        restore of this process that is over, are removed from the directories this restore
        writes to; those of a live restore are left alone."""
        dirs = [b""] + [
            s.rel
            for s in steps
            if s.entry is not None
            and s.entry.kind == mf.DIR
            and s.action in ("unchanged", "metadata")
        ]
        prefix = TMP_PREFIX.encode()
        me = os.getpid()
        for rel in dirs:
            try:
                fd = self._d.acquire(rel)
            except OSError:
                continue
            try:
                names = [n for n in map(os.fsencode, os.listdir(fd)) if n.startswith(prefix)]
                for name in names:
                    pid_text = name[len(prefix) :].split(b"-", 1)[0]
                    pid = int(pid_text) if pid_text.isdigit() else -1
                    if pid == me:
                        with _LIVE_LOCK:
                            if name in _LIVE:
                                continue
                    elif pid > 0 and pid_alive(pid):
                        continue
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=fd)
            except OSError:
                pass
            finally:
                self._d.release(fd)

    def _check_chunks(self, entries: list[Entry]) -> None:
        """The files some of whose chunks the index does not know: planned as skipped with
        why (the preview names them), not written, and named damaged (`damaged`), as a file
        whose pack turns out damaged is while it is read."""
        self._unindexed = set(missing_chunk_files(self.repo, entries))

    def _record(self, steps: list[Step]) -> None:
        """The preview: exact counts of the whole plan, and the first MAX_CHANGES changes."""
        r = self.result
        for s in steps:
            if len(r.changes) >= MAX_CHANGES:
                r.changes_truncated = True
                break
            if s.action == "unchanged" and s.kind == "dir":
                continue
            r.changes.append(
                RestoreChange(
                    path=text_of(s.rel),
                    path_b64=b64_of(s.rel),
                    action=s.action,  # type: ignore[arg-type]
                    kind=s.kind,  # type: ignore[arg-type]
                    size=s.entry.size if s.entry and s.entry.kind == mf.FILE else 0,
                    reason=s.reason,
                )
            )
        r.counts = count_steps(steps)
        r.files_unchanged = r.counts.files_unchanged
        r.files_skipped = r.counts.skipped

    # --- temp files ------------------------------------------------------------------------

    def _new_temp(self, dir_fd: int) -> bytes:
        """A fresh temp name in the directory `dir_fd`, tracked until `_temp_gone` (the
        caller holds `dir_fd` that long), so that any exit removes it."""
        name = _tmp_name()
        with self._lock:
            self._temps[name] = dir_fd
        with _LIVE_LOCK:
            _LIVE.add(name)
        return name

    def _temp_gone(self, name: bytes) -> None:
        with self._lock:
            self._temps.pop(name, None)
        with _LIVE_LOCK:
            _LIVE.discard(name)

    def _sweep_temps(self) -> None:
        """Every temp file still there (a cancelled or failed restore: queued parts of a large
        file never ran) is removed, and the descriptors of unfinished files closed."""
        for job in list(self._jobs):
            job.discard()
        for name, dir_fd in list(self._temps.items()):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
            self._temp_gone(name)

    # --- changing the target ---------------------------------------------------------------

    def _remove_tree(self, dir_fd: int, parent: bytes, name: bytes) -> bool:
        """Remove the directory `name` (a file or symlink takes its place) unless it is or
        holds a protected directory (then a warning, False)."""
        rel = parent + b"/" + name if parent else name
        why, files, _dirs = self._survey_tree(dir_fd, name, rel)
        if why:
            self.warn(f"{_show(rel)}: not restored ({why})")
            return False
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            shutil.rmtree(name, dir_fd=dir_fd)
        self._d.forget(rel)
        with self._lock:
            self.result.files_deleted += files
        return True

    def _execute(self, steps: list[Step]) -> None:
        ctx = self.ctx
        # Directories first, in order (parents before children).
        for s in steps:
            if s.entry is not None and s.kind == "dir" and s.action in ("create", "overwrite"):
                ctx.check()
                self._make_dir(s)
        files = [
            s
            for s in steps
            if s.entry is not None
            and s.kind == "file"
            and s.action in ("create", "overwrite", "metadata")
        ]
        self._write_files([s for s in files if s.link is None])
        self._write_files(self._link_files([s for s in files if s.link is not None]))
        for s in steps:
            if s.entry is not None and s.kind == "symlink" and s.action in ("create", "overwrite"):
                ctx.check()
                self._restore_symlink(s)
        for s in sorted((s for s in steps if s.action == "delete"), key=_rel, reverse=True):
            ctx.check()
            self._delete(s)
        # Directory metadata last, deepest first (writing inside changes mtime).
        dirs = [
            s
            for s in steps
            if s.entry is not None and s.kind == "dir" and s.action != "skip" and s.reason != KEPT
        ]
        for s in sorted(dirs, key=lambda s: s.rel.count(b"/"), reverse=True):
            try:
                fd = self._d.acquire(s.rel)
            except OSError:
                continue
            try:
                self._apply_meta(fd, s.entry, _show(s.rel))  # type: ignore[arg-type]
            finally:
                self._d.release(fd)

    def _make_dir(self, s: Step) -> None:
        parent, name = _split(s.rel)
        try:
            with self._d.at(parent) as fd:
                if s.action == "overwrite":
                    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                        os.unlink(name, dir_fd=fd)
                os.mkdir(name, 0o700, dir_fd=fd)
        except FileExistsError:
            return  # made meanwhile: used if it is a directory, refused later if not
        except OSError as exc:
            self.warn(f"{_show(s.rel)}: not restored: {exc.strerror or exc}")
            return
        self.result.dirs_created += 1

    def _delete(self, s: Step) -> None:
        parent, name = _split(s.rel)
        try:
            with self._d.at(parent) as fd:
                if s.kind == "dir":
                    os.rmdir(name, dir_fd=fd)
                    self._d.forget(s.rel)
                else:
                    os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.warn(f"{_show(s.rel)}: not deleted: {exc.strerror or exc}")
            return
        self.result.files_deleted += 1

    def _apply_meta(self, fd: int, e: Entry, show: str, now: os.stat_result | None = None) -> None:
        """Owner, xattrs, mode and times, through the open descriptor (chown first: it
        clears set-id bits; times last). `now`, the file's fstat when the caller has it,
        spares a chown or chmod that would change nothing (not the chmod after xattrs: an
        ACL set there may have changed the mode)."""
        if self._euid == 0 and (now is None or (now.st_uid, now.st_gid) != (e.uid, e.gid)):
            with contextlib.suppress(OSError):
                os.fchown(fd, e.uid, e.gid)
        if e.xattrs:
            self._set_xattrs(fd, e, show)
        if now is None or e.xattrs or stat.S_IMODE(now.st_mode) != stat.S_IMODE(e.mode):
            os.fchmod(fd, stat.S_IMODE(e.mode))
        os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))

    def _set_xattrs(self, fd: int, e: Entry, show: str) -> None:
        failed: list[str] = []
        why = ""
        for key, value in (e.xattrs or {}).items():
            try:
                os.setxattr(fd, key, value)
            except OSError as exc:
                failed.append(fs_text(key))
                why = exc.strerror or str(exc)
        if failed:
            self.warn(f"{show}: extended attributes not restored ({', '.join(failed)}): {why}")

    def _open_existing(self, rel: bytes) -> int:
        """A file of the target opened for reading through its directory's descriptor,
        without following a symlink (the caller closes it)."""
        parent, name = _split(rel)
        with self._d.at(parent) as dfd:
            return os.open(name, READ_FLAGS, dir_fd=dfd)

    def _restore_meta_only(self, s: Step) -> None:
        """The content is right: only owner, xattrs, mode and times are set again."""
        e = s.entry
        assert e is not None
        try:
            fd = self._open_existing(s.rel)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    self.warn(f"{_show(s.rel)}: metadata not restored: the file changed meanwhile")
                    return
                self._apply_meta(fd, e, _show(s.rel))
            finally:
                os.close(fd)
        except OSError as exc:
            self.warn(f"{_show(s.rel)}: metadata not restored: {exc.strerror or exc}")

    def _write_files(self, files: list[Step]) -> None:
        """Write the files with a pool of threads. A large file is split into parts written
        at their offsets by several threads at once (one big checkpoint would otherwise be
        restored by one core); a bounded number of jobs is in flight."""
        if not files:
            return
        ctx = self.ctx
        # One writer per core: the GIL is what they share, and each writer more than that
        # only waits for it after every system call and decompression (benchmarks/LATEST.md).
        workers = max(2, min(8, os.cpu_count() or 2))
        with (
            quick_handoffs(),
            contextlib.closing(self.repo.store.reader()) as self.packs,
            Pipeline(workers, name="nexus-restore", on_failure=ctx.cancel.set) as pipeline,
        ):
            small: list[Step] = []
            small_bytes = 0
            for s in files:
                ctx.check()
                if not _is_small(s):
                    if not all(pipeline.submit(job) for job in self._file_jobs(s)):
                        break
                    continue
                small.append(s)
                small_bytes += s.entry.size  # type: ignore[union-attr]
                if small_bytes >= BATCH_BYTES or len(small) >= BATCH_FILES:
                    if not pipeline.submit_small(self._small_files_job(small)):
                        break
                    small, small_bytes = [], 0
            else:
                if small:
                    pipeline.submit_small(self._small_files_job(small))

    def _small_files_job(self, steps: list[Step]) -> Callable[[], None]:
        """One job for many small files: their chunks read together in pack order (a pack's
        neighbouring chunks in one request, however many files share that run), then each
        file written from them. On damage each file reads its own chunks again, so the error
        names the file."""

        def run() -> None:
            wanted = dict.fromkeys(
                bytes.fromhex(h)
                for s in steps
                for h, _n in s.entry.chunks  # type: ignore[union-attr]
            )
            digests = sorted(wanted, key=self._where)
            try:
                got: dict[bytes, bytes] | None = dict(
                    zip(digests, self.repo.read_blobs(digests, self.packs), strict=True)
                )
            except Damaged:
                got = None
            for s in steps:
                self.ctx.check()
                job = self._file_job(s)
                if job is not None:
                    job.whole(got)

        return run

    def _where(self, digest: bytes) -> tuple[int, str, int]:
        """A chunk's place in the repository, for reading in pack order (unknown ones last,
        where reading them names what is missing)."""
        loc = self.repo.index.get(digest)
        return (1, "", 0) if loc is None else (0, loc.pack_id, loc.offset)

    def _file_job(self, s: Step) -> _FileJob | None:
        parent, _name = _split(s.rel)
        try:
            dir_fd = self._d.acquire(parent)
        except OSError:
            self.warn(f"{_show(s.rel)}: not restored: a parent directory is missing or a symlink")
            return None
        return _FileJob(self, s, dir_fd)

    def _file_jobs(self, s: Step) -> list[Callable[[], None]]:
        e = s.entry
        assert e is not None
        if s.action == "metadata":
            return [lambda: self._restore_meta_only(s)]
        job = self._file_job(s)
        if job is None:
            return []
        if e.size < SPLIT_SIZE or len(e.chunks) < 2:
            return [job.whole]
        if not job.open():
            return []
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

    def _read_many(self, digests_hex: list[str], show: str) -> Iterator[bytes]:
        """A file's chunks in order, read a pack's run at a time (`Repository.read_blobs`);
        damage names the file."""
        try:
            yield from self.repo.read_blobs([bytes.fromhex(h) for h in digests_hex], self.packs)
        except Damaged as exc:
            raise Damaged(f"{show}: {exc}") from exc

    def _wrote(self, e: Entry, nbytes: int) -> None:
        self.ctx.advance(files=1)
        with self._lock:
            self._files_written += 1
            self._bytes_written += nbytes

    def _link_files(self, steps: list[Step]) -> list[Step]:
        """Hard links made to files this restore wrote; those it cannot make are returned,
        to be written as files of their own."""
        left = []
        for s in steps:
            self.ctx.check()
            if not self._make_link(s):
                s.link = None
                left.append(s)
        return left

    def _make_link(self, s: Step) -> bool:
        e = s.entry
        assert e is not None and s.link is not None
        done = self._written.get(s.link)
        if done is None or done[0] != e.hash:
            return False
        src_parent, src_name = _split(s.link)
        parent, name = _split(s.rel)
        try:
            with self._d.at(src_parent) as sfd, self._d.at(parent) as dfd:
                st = os.stat(src_name, dir_fd=sfd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) != done[1:]:
                    return False  # not the file this restore wrote any more
                tmp = self._new_temp(dfd)
                try:
                    os.link(src_name, tmp, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                    if s.reason == REPLACES_DIR and not self._remove_tree(dfd, parent, name):
                        os.unlink(tmp, dir_fd=dfd)
                        return True
                    _place(dfd, tmp, name, create=s.action == "create")
                    # already a link of that inode: rename did nothing, the temp is still there
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp, dir_fd=dfd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=dfd)
                    raise
                finally:
                    self._temp_gone(tmp)
        except OSError:
            return False
        self._wrote(e, 0)
        return True

    def _restore_symlink(self, s: Step) -> None:
        e = s.entry
        assert e is not None and e.target is not None
        parent, name = _split(s.rel)
        try:
            dfd = self._d.acquire(parent)
        except OSError:
            self.warn(f"{_show(s.rel)}: not restored: a parent directory is missing or a symlink")
            return
        try:
            tmp = self._new_temp(dfd)
            try:
                try:
                    os.symlink(e.target, tmp, dir_fd=dfd)
                except FileNotFoundError:
                    self.warn(f"{_show(s.rel)}: not restored: its directory was removed meanwhile")
                    return
                if self._euid == 0:
                    with contextlib.suppress(OSError):
                        os.chown(tmp, e.uid, e.gid, dir_fd=dfd, follow_symlinks=False)
                os.utime(tmp, ns=(e.mtime_ns, e.mtime_ns), dir_fd=dfd, follow_symlinks=False)
                if s.reason == REPLACES_DIR and not self._remove_tree(dfd, parent, name):
                    os.unlink(tmp, dir_fd=dfd)
                    return
                _place(dfd, tmp, name, create=s.action == "create")
            except FileExistsError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                self.warn(f"{_show(s.rel)}: not restored: {TAKEN_MEANWHILE}")
                return
            except (IsADirectoryError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                self.warn(f"{_show(s.rel)}: not restored: its place changed meanwhile")
                return
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                if not _refused_here(exc):
                    raise
                self.warn(f"{_show(s.rel)}: not restored: {exc.strerror}")  # type: ignore[attr-defined]
                return
            finally:
                self._temp_gone(tmp)
        finally:
            self._d.release(dfd)
        self.result.symlinks_created += 1


def _slim(e: Entry) -> Entry:
    """What a restore never reads dropped from an entry it holds for its whole run (decoded
    for it alone): the manifest line as read, and a one-chunk file's second copy of its hash
    (the chunk's id is its content hash)."""
    e.raw = None
    chunks = e.chunks
    if len(chunks) == 1 and chunks[0][0] == e.hash:
        e.chunks = [(e.hash, chunks[0][1])]
    return e


def _scan(fd: int) -> list[tuple[bytes, os.stat_result]]:
    """A directory's entries through its descriptor, each lstat'ed."""
    with os.scandir(fd) as it:
        return [(os.fsencode(d.name), d.stat(follow_symlinks=False)) for d in it]


def _rel(s: Step) -> bytes:
    return s.rel


def count_steps(steps: list[Step]) -> RestoreCounts:
    """The exact counts of a plan (the preview, and what the restore then does)."""
    by = Counter((s.kind, s.action) for s in steps)
    nbytes = sum(
        s.entry.size
        for s in steps
        if s.entry is not None
        and s.kind == "file"
        and s.action in ("create", "overwrite")
        and s.link is None
    )
    return RestoreCounts(
        files_create=by["file", "create"],
        files_overwrite=by["file", "overwrite"],
        files_unchanged=by["file", "unchanged"],
        files_metadata=by["file", "metadata"],
        dirs_metadata=by["dir", "metadata"],
        dirs_create=by["dir", "create"],
        dirs_overwrite=by["dir", "overwrite"],
        symlinks_create=by["symlink", "create"],
        symlinks_overwrite=by["symlink", "overwrite"],
        skipped=sum(n for (_k, a), n in by.items() if a == "skip"),
        delete_files=by["file", "delete"]
        + by["symlink", "delete"]
        + by["special", "delete"]
        + sum(s.inside[0] for s in steps),
        delete_dirs=by["dir", "delete"] + sum(s.inside[1] for s in steps),
        bytes_to_write=nbytes,
    )


SPLIT_SIZE = 16 * 1024 * 1024  # files at least this large are written by several threads
PART_SIZE = 8 * 1024 * 1024
#: Small files are restored in jobs of at most this many bytes or files, their chunks read
#: together in pack order.
BATCH_BYTES = 4 * 1024 * 1024
BATCH_FILES = 256


def _is_small(s: Step) -> bool:
    """A file whose chunks are read with other files' (larger ones stream their own)."""
    e = s.entry
    assert e is not None
    return s.action != "metadata" and e.size < BATCH_BYTES


class _FileJob:
    """One file being restored: a temp file beside the target (created through the
    directory's descriptor, which the job holds), filled with chunks each checked against
    its BLAKE3 hash (the manifest, itself checked against the backup's checksum, lists them
    in order; chunks of zeros are left as holes), then given its owner, xattrs, mode and
    times through its descriptor and renamed over the target. A failure removes the temp
    file and leaves the target as it was; so does a cancel (`Restorer._sweep_temps`)."""

    def __init__(self, restorer: Restorer, step: Step, dir_fd: int) -> None:
        self.r = restorer
        self.step = step
        self.entry: Entry = step.entry  # type: ignore[assignment]
        self.name = _split(step.rel)[1]
        self.show = _show(step.rel)
        self.dir_fd = dir_fd
        self.tmp: bytes | None = None
        self.fd = -1
        #: The file is a nameless inode (`restore_anon`).
        self.anon = False
        self.parts_left = 0
        self.failed = False
        self.over = False
        self.lock = threading.Lock()
        with restorer._lock:
            restorer._jobs.add(self)

    def open(self, *, presize: bool = True) -> bool:
        """Create the temp file (a nameless one where the restore creates the file and the
        system allows it); False (with a warning) when its directory was removed since the
        restore made or opened it (someone else's doing: the file is skipped)."""
        try:
            if not self._open_anon():
                self.tmp = self.r._new_temp(self.dir_fd)
                self.fd = os.open(self.tmp, FILE_FLAGS, 0o600, dir_fd=self.dir_fd)
            if presize:  # parts are written at their offsets, in any order
                os.ftruncate(self.fd, self.entry.size)
        except FileNotFoundError:
            self.discard()
            self.r.warn(f"{self.show}: not restored: its directory was removed meanwhile")
            return False
        except BaseException as exc:
            self.discard()
            if not _refused_here(exc):
                raise
            self.r.warn(f"{self.show}: not restored: {exc.strerror}")  # type: ignore[attr-defined]
            return False
        return True

    def _open_anon(self) -> bool:
        """A nameless file for a file this restore creates (nothing was at its name when
        planned): True when made. Off for the rest of the restore once the filesystem
        refuses one."""
        r = self.r
        if not r.anon or self.step.action != "create":
            return False
        mode = restore_anon.creation_mode(self.entry.mode, r._umask)
        fd = restore_anon.open_anon(self.dir_fd, 0o600 if mode is None else mode)
        if fd is None:
            r.anon = False
            return False
        self.fd, self.anon = fd, True
        return True

    def whole(self, read: dict[bytes, bytes] | None = None) -> None:
        """Write the file from its chunks, read now or, for a small file, already `read`
        with its neighbours' (`Restorer._small_files_job`)."""
        ctx = self.r.ctx
        hexes = [h for h, _n in self.entry.chunks]
        try:
            ctx.check()
            if not self.open(presize=False):
                return
            written = end = 0
            raws = (
                self.r._read_many(hexes, self.show)
                if read is None
                else (read[bytes.fromhex(h)] for h in hexes)
            )
            for raw in raws:
                ctx.check()
                if not _is_zero(raw):
                    _pwrite_all(self.fd, raw, written)
                    end = written + len(raw)
                written += len(raw)
                ctx.advance(nbytes=len(raw), path=self.show)
            if written != self.entry.size:
                raise Damaged(f"{self.show}: restored size does not match the backup")
            if end != written:
                os.ftruncate(self.fd, written)  # trailing zeros: a hole to the end
            self._finish()
        except Damaged as exc:
            self.discard()
            self.r.damaged(self.step.rel, exc)
        except BaseException:
            self.discard()
            raise

    def part(self, group: list[tuple[str, int, int]]) -> Callable[[], None]:
        def run() -> None:
            ctx = self.r.ctx
            try:
                if self.failed:  # another part met damage: the file is given up
                    self._part_done()
                    return
                blobs = self.r._read_many([h for h, _n, _o in group], self.show)
                for (_h, n, offset), raw in zip(group, blobs, strict=True):
                    ctx.check()
                    if len(raw) != n:
                        raise Damaged(f"{self.show}: a chunk has the wrong size")
                    if not _is_zero(raw):
                        _pwrite_all(self.fd, raw, offset)
                    ctx.advance(nbytes=n, path=self.show)
            except Damaged as exc:
                with self.lock:
                    first = not self.failed
                    self.failed = True
                if first:  # the file is named once, whichever of its parts met the damage
                    self.r.damaged(self.step.rel, exc)
                self._part_done()
                return
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
            self.discard()
            return
        try:
            self._finish()
        except BaseException:
            self.discard()
            raise

    def _finish(self) -> None:
        r = self.r
        # A new file's owner and mode, as the system made them (its directory's gid, a
        # default ACL): an fstat costs less than a chown or chmod that changes nothing.
        st = os.fstat(self.fd) if self.anon or self.step.rel in r._link_sources else None
        r._apply_meta(self.fd, self.entry, self.show, st)
        ident = None if st is None or self.step.rel not in r._link_sources else _dev_ino(st)
        if self.anon:
            self._link_anon(ident)
            return
        os.close(self.fd)
        self.fd = -1
        assert self.tmp is not None
        if self.step.reason == REPLACES_DIR and not r._remove_tree(
            self.dir_fd, _split(self.step.rel)[0], self.name
        ):
            self.discard()
            return
        try:
            _place(self.dir_fd, self.tmp, self.name, create=self.step.action == "create")
        except FileExistsError:
            r.warn(f"{self.show}: not restored: {TAKEN_MEANWHILE}")
            self.discard()
            return
        except (IsADirectoryError, FileNotFoundError) as exc:
            why = (
                "a directory appeared there"
                if isinstance(exc, IsADirectoryError)
                else ("its directory was removed meanwhile")
            )
            r.warn(f"{self.show}: not restored: {why}")
            self.discard()
            return
        except OSError as exc:
            if not _refused_here(exc):
                raise
            r.warn(f"{self.show}: not restored: {exc.strerror}")
            self.discard()
            return
        r._temp_gone(self.tmp)
        self.tmp = None
        self._named(ident)

    def _named(self, ident: tuple[int, int] | None) -> None:
        """The file is in place: counted, and remembered when hard links will point at it."""
        r = self.r
        if ident is not None:
            with r._lock:
                r._written[self.step.rel] = (self.entry.hash or "", *ident)
        r._wrote(self.entry, self.entry.size)
        self.discard()

    def _link_anon(self, ident: tuple[int, int] | None) -> None:
        """Name the finished nameless file (made only for a creation), or leave it unnamed
        with a warning when its name was taken since the plan (a creation never replaces,
        `_place`)."""
        r = self.r
        try:
            restore_anon.link_anon(self.fd, self.dir_fd, self.name)
        except FileExistsError:
            r.warn(f"{self.show}: not restored: {TAKEN_MEANWHILE}")
            self.discard()
            return
        except FileNotFoundError:
            r.warn(f"{self.show}: not restored: its directory was removed meanwhile")
            self.discard()
            return
        self._named(ident)

    def discard(self) -> None:
        """Close and remove the temp file if it is still there; release the directory
        (once, whoever calls it: a failure, the last part, the restore's final sweep)."""
        with self.lock:
            if self.over:
                return
            self.over = True
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            self.r._temp_gone(self.tmp)
            self.tmp = None
        self.r._d.release(self.dir_fd)
        with self.r._lock:
            self.r._jobs.discard(self)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
