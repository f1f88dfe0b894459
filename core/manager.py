"""The async face of the engine: create, restore, list, info, delete, verify.

Every operation's work runs in a worker thread, so an event loop (the TUI's, the API's)
never stalls. Progress goes to a callback in the loop's thread at a bounded rate.
Cancelling the awaiting task cancels the operation: the engine notices between chunks,
a create is marked FAILED ("cancelled") and its partial data removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from core import display
from core import stats as st
from core.config import check_directory, resolve_repository, resolve_root
from core.display import plural
from core.errors import (
    Busy,
    Cancelled,
    Conflict,
    Damaged,
    InvalidInput,
    NexusError,
    NotFound,
    ReadOnly,
    TargetWrongPassword,
    WrongPassword,
    describe_os_error,
    from_os_error,
)
from core.logger import BackupLogger
from core.manage import browse, projects, runs
from core.manage.compare import Comparing
from core.manage.locking import LOCK_TIMEOUT, live_status, locked, reading
from core.manage.runs import ScheduleState
from core.models import (
    RESTORABLE,
    BackupInfo,
    BackupMetadata,
    BackupStatus,
    BackupType,
    CheckResult,
    CopyResult,
    CreateRequest,
    DeleteResult,
    LastRun,
    ListFilter,
    ManifestSummary,
    ProgressEvent,
    ProjectDeleteResult,
    ProjectSummary,
    RebuildResult,
    RestoreRequest,
    RestoreResult,
    TreeEntry,
    VerifyResult,
    check_id,
)
from core.ops import copy
from core.ops import forget as fg
from core.ops.check import check_repository, rebuild_index
from core.ops.confine import (
    dir_id,
    dir_ids,
    every_dir_id,
    lies_in,
    open_data_dir,
    open_dir_beneath,
)
from core.ops.progress import Clock, OperationContext, utc_now
from core.ops.reclaim import MAX_UNUSED, drop_unindexed_packs, reclaim, why_stopped
from core.ops.recovery import recover, recover_locked
from core.query import Query
from core.repo import locks, marker
from core.repo import manifest as mf
from core.repo.repository import (
    HOSTNAME,
    POLICY_REMEDY,
    NewerFormat,
    RepoConfig,
    Repository,
    current_user,
    half_made,
    new_backup_id,
)
from core.retention import ForgetResult, Policy, evaluate
from core.stats import ProjectStats, RepositoryStats
from core.storage import TMP_MARK, ObjectStore, open_store
from core.storage.url import local_path
from core.utc import CLOCK_SKEW
from core.validator import verify_backup, verify_backups

T = TypeVar("T")
Progress = Callable[[ProgressEvent], None]
#: The `reason` tag of the checkpoint a restore takes of its target first.
PRE_RESTORE = "pre-restore"
#: The earliest time a backup may be given (older ones name no real backup, and the year 1
#: cannot be written in UTC once its zone is taken away).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


#: A short id: the start (4 or more characters) of the random part that ends every id
#: (`fcaf67` of `20261201-160945-fcaf67`), which the TUI shows where the whole id does not fit.
_SHORT_ID = re.compile(r"[0-9a-f]{4,6}")


def _config_problem(repo: Repository) -> str | None:
    """Why the project's config.json cannot be read, or None: its backups still list
    (metadata.json stands alone) while every restore and backup fails, so a listing says
    so rather than show it healthy. A newer format is not a problem here: readers list it."""
    try:
        repo.config  # noqa: B018 - validated whole when read
    except NewerFormat:
        return None
    except (NexusError, ValueError) as exc:
        return str(exc) or "damaged"
    return None


def _listed(repo: Repository) -> list[BackupMetadata]:
    """The backups a face lists: readable metadata, without those retention removed (still
    in their grace period: `removed` lists them)."""
    return _shown(repo.list_metadata()[0])


def _refuse_unconfirmed(result: ForgetResult, removing: Collection[str]) -> None:
    """A retention plan that removes a backup the confirmation showed kept (the same rules,
    after a backup was made meanwhile, reach one more) is refused: the count confirmed is
    the count removed, or nothing is (as a project delete refuses a changed count)."""
    now = sorted(d.backup_id for d in result.decisions if not d.keep)
    extra = [i for i in now if i not in set(removing)]
    if extra:
        raise Conflict(
            f"retention of {result.project_id!r} now removes {plural(len(now), 'backup')}, "
            f"not the {len(set(removing))} confirmed ({', '.join(extra[:3])} was shown kept; "
            "a backup was made meanwhile): look again before applying it"
        )


def _shown(metas: list[BackupMetadata]) -> list[BackupMetadata]:
    """Of readable metadata, what a list shows (and what a project's count counts)."""
    return [m for m in metas if m.removed_at is None]


def _repaired(done: DeleteResult) -> str:
    return (
        f"{plural(done.chunks_repaired, 'chunk')} damaged where the index served them: reclaim "
        "kept an intact copy of each and serves that (run verify to see what else is damaged)"
    )


def _local_copy(repo: Repository) -> list[Path]:
    """The directory of the project's `copy_to` twin when it is on a local disk, and the
    twin's directory of this project (what the copy writes): a backup of a data directory
    holding either would otherwise store the copies of itself. The second counts when the
    twin is the data directory itself, which the walk never skips."""
    to = repo.settings().get("copy_to")
    if not isinstance(to, str) or not to:
        return []
    with contextlib.suppress(NexusError):  # a setting the copy itself will report
        if (where := local_path(to)) is not None:
            return [where, where / projects.PROJECTS / repo.project_id]
    return []


#: How deep below a repository's root a copy target is looked for by identity (root,
#: backups/, a project, its packs/, a pack directory): deeper, no store is ever opened.
_LAYOUT_DEPTH = 4


def _new_project_id(project_id: str) -> None:
    """A name a project is given now (made, a copy's target, a rename) never holds TMP_MARK:
    every store's listing hides a name holding it (an object on its way in), so the project
    would be made and then shown nowhere and never run by `run-due`. A project an older
    version so named stays readable by its name (`check_id` allows it)."""
    if TMP_MARK in project_id:
        raise InvalidInput(
            f"invalid project_id {project_id!r}: {TMP_MARK!r} marks a file on its way in,"
            " which no listing shows; choose another name"
        )


def _nested(a: str, b: str) -> bool:
    """Whether one store URL is the other or lies under it (`s3://B/r` and `s3://B/r/backups`):
    a remote store has no directory to compare, its objects live under the URL's prefix, so a
    copy there would be mixed with this repository's (a `backups` project in every listing)."""
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def _same_tree(mine: Path, theirs: Path) -> bool:
    """Whether `theirs` is `mine`, lies inside it or holds it, told by device and inode (a
    bind mount names one directory by two paths, which comparing paths misses). A target not
    made yet is judged by its nearest existing ancestor, where it would be made."""
    near = theirs
    while not near.exists() and near != near.parent:
        near = near.parent
    try:
        st = os.stat(near)
    except OSError:
        return False
    target = (st.st_dev, st.st_ino)

    def same(path: str | Path) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == target

    if near == theirs and any(same(p) for p in (mine, *mine.parents)):
        return True  # it exists, and holds this repository
    level = [str(mine)]
    for depth in range(_LAYOUT_DEPTH + 1):
        if any(same(d) for d in level):
            return True
        if depth == _LAYOUT_DEPTH:
            break
        below: list[str] = []
        for d in level:
            with contextlib.suppress(OSError), os.scandir(d) as it:
                below += [e.path for e in it if e.is_dir(follow_symlinks=False)]
        level = below
    return False


class BackupManager(Comparing):
    """All of a repository root's projects, for one process."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        repository: str | os.PathLike[str] | None = None,
        new_id: Callable[[], str] | None = None,
        clock: Clock | None = None,
        password: Callable[[str], str] | None = None,
        encrypt: bool = False,
        to_password: Callable[[str], str] | None = None,
        password_files: Sequence[str] = (),
    ) -> None:
        """`root` holds the logs and, unless `repository` names another store (a path or a
        URL, else NEXUS_BACKUP_REPOSITORY), the projects' repositories under `backups/`.
        `new_id` makes backup ids (default: time-sortable and random), `clock` the times
        the engine stamps (default: now, in UTC); demos and screenshots pass deterministic
        ones. `password(project_id)` gives an encrypted project's password when it is first
        opened (the face asks its user, reads a file...; None: encrypted projects refuse to
        open); with `encrypt`, the projects this manager creates are encrypted under it.
        `to_password(project_id)` gives the password of a copy's target (the repository
        `copy` writes to, and `copy_to`'s); None: the project's own password opens it.
        `password_files`: the files those passwords are read from, which no restore
        overwrites or deletes (a backup's older copy would lock the project's owner out)."""
        self.root = check_directory(resolve_root(root))
        where = resolve_repository(repository, self.root)
        if isinstance(where, Path):
            check_directory(where, "the repository")
        self.store: ObjectStore = open_store(where)
        self._new_id = new_id or new_backup_id
        self._clock = clock or utc_now
        self._password = password
        self._to_password = to_password
        self._encrypt = encrypt
        self._password_files = tuple(password_files)
        # Nothing is created here: a read-only command never writes, not even the root (made
        # with the first project), so a read-only mount or snapshot can be listed and restored.
        self.logger = BackupLogger(self.root)
        self._repos: dict[str, Repository] = {}
        self._repos_lock = threading.Lock()
        self._running: dict[tuple[str, str], OperationContext] = {}
        self._manifests: OrderedDict[tuple[str, str], list[mf.Entry]] = OrderedDict()
        self._copies: dict[tuple[str, str], CopyResult | str] = {}
        self._retentions: dict[tuple[str, str], ForgetResult | str] = {}
        #: (store URL, project, SHA-256 of a password, digest of the key objects) that did
        #: not open: refused again at once, without an Argon2id per key (a server asked over
        #: and over with one wrong password would pay it at every request). A key object
        #: added, changed or put back meanwhile is tried again.
        self._refused: set[tuple[str, str, bytes, bytes]] = set()
        #: The operations this process ran, by project, kind and result (core.metrics).
        self.operations = st.OperationCounts()

    # --- plumbing --------------------------------------------------------------------------

    def _log(
        self,
        project_id: str,
        level: str,
        operation: str,
        message: str,
        backup_id: str | None = None,
    ) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.logger.log(project_id, level, operation, message, backup_id=backup_id)

    def _repo(
        self, project_id: str, *, create: bool = False, password: str | None = None
    ) -> Repository:
        """The project's repository. Opening it never writes (read-only commands never do);
        `create` makes a new project; `password` opens an encrypted one without asking."""
        check_id(project_id, "project_id")
        with self._repos_lock:
            kept = self._repos.get(project_id)
        # read outside the lock (a GET on S3): other projects' requests never wait for it
        if kept is not None and kept.same_project():
            return kept
        with self._repos_lock:
            repo = self._repos.get(project_id)
            if repo is not None and repo is kept:
                # Another process replaced it (delete-project then create, a rename into its
                # place, a config of a newer format): its config, key, chunker seed and
                # index are not this one's, and writing with them made objects nothing
                # opens. Opened afresh (I18).
                del self._repos[project_id]
                for key in [k for k in self._manifests if k[0] == project_id]:
                    self._manifests.pop(key, None)
                if not repo.exists():
                    # gone: an operation meant for the project it had open does not make one
                    # anew (I11), and says why; said once, the next one is asked afresh
                    raise NotFound(
                        f"project {project_id!r} was deleted or renamed by another process "
                        "since this one opened it: nothing was written"
                    )
                repo = None
            if repo is None:
                repo = Repository(
                    self.root, project_id, projects.project_store(self.store, project_id)
                )
                if not repo.exists():
                    if not create:
                        raise NotFound(f"unknown project {project_id!r}")
                    if self._init(repo, password=password):
                        self._log(project_id, "INFO", "project", "project created")
                    else:  # another process made it first: opened as any existing one
                        self._unlock(repo, password)
                elif repo.store.exists(projects.DELETING):
                    if not create:
                        raise NotFound(f"project {project_id!r} is being deleted")
                    raise Conflict(
                        f"project {project_id!r} is being deleted: run delete-project "
                        f"{project_id} again to finish, then make it anew"
                    )
                else:
                    self._unlock(repo, password)
                self._repos[project_id] = repo
            return repo

    # --- encryption at rest: the one place the manager asks for a password ----------------

    def _ask_password(self, project_id: str, *, target: bool = False) -> str:
        """The project's password; `target`: that of a copy's target (`to_password`, else
        the project's own)."""
        ask = self._to_password if target and self._to_password is not None else self._password
        if ask is None:
            raise WrongPassword(f"project {project_id!r} is encrypted and no password was given")
        return ask(project_id)

    def _init(
        self,
        repo: Repository,
        like: RepoConfig | None = None,
        *,
        target: bool = False,
        password: str | None = None,
    ) -> bool:
        """Create a repository: encrypted when this manager encrypts new projects, or a
        `password` is given for it, and a copy of an encrypted project (`like` its config)
        always (a copy never decrypts unasked: into a plain target, only one that exists
        already). False: another process made it first (see Repository.init)."""
        _new_project_id(repo.project_id)
        encrypt = self._encrypt or (like is not None and like.encryption is not None)
        if password is None and encrypt:
            password = self._ask_password(repo.project_id, target=target)
        return repo.init(like, password=password)

    def _unlock(
        self, repo: Repository, password: str | None = None, *, target: bool = False
    ) -> None:
        """An encrypted repository's codec, from its password (`password`, else asked), before
        any other object is read (WrongPassword: nothing written, nothing locked); a plain
        one is left as it is. `target`: a copy's target (see `_ask_password`)."""
        if repo.encrypted():
            if password is None:
                password = self._ask_password(repo.project_id, target=target)
            tried = (
                repo.store.url,
                repo.project_id,
                hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest(),
                repo.keys_fingerprint(),
            )
            if tried in self._refused:
                raise WrongPassword(f"project {repo.project_id!r}: wrong password")
            try:
                repo.unlock(password)
            except WrongPassword:
                self._refused.add(tried)
                raise

    def unlock_blocking(self, project_id: str, password: str) -> None:
        """Open an encrypted project with `password` for the rest of this manager's life, so
        that a face can ask its user before an operation starts (no worker then waits on a
        person): WrongPassword when no key opens with it. Nothing to do for a plain project
        or one already open."""
        self._repo(project_id, password=password)

    def key_list(self, project_id: str) -> list[dict]:
        """The key objects of an encrypted project (never a wrapped key)."""
        return self._repo(project_id).key_list()

    def key_add(self, project_id: str, new_password: str) -> str:
        """Another password for the project; the new key's id. Under the shared lock, whose
        taking checks that the project is still there (I11): a key added after a
        delete-project finished brought back a directory holding only that key, a project
        `create` and `delete-project` both refused for ever."""
        repo = self._encrypted_repo(project_id)
        with locked(repo, "key add", exclusive=False):
            return repo.add_key(new_password)

    def key_remove(self, project_id: str, key_id: str) -> None:
        """Remove a key (under the exclusive lock: two removals at once cannot remove the
        last two keys); the last key is refused."""
        repo = self._encrypted_repo(project_id)
        with locked(repo, "key remove", exclusive=True):
            repo.remove_key(key_id)

    def key_passwd(self, project_id: str, new_password: str) -> str:
        """Change the password of the key that opened the project: the new key object is
        durable before the old one is removed, so a crash leaves the old or the new (or
        both) opening it. Returns the new key's id."""
        repo = self._encrypted_repo(project_id)
        old = repo.unlocked_key
        with locked(repo, "key passwd", exclusive=True):
            # under the lock: a change of the same key at once waits, then finds its old key
            # gone and changes nothing (it never adds a password it then reports as failed)
            if old is not None and old not in repo.key_ids():
                raise NotFound(
                    f"project {project_id!r}: the key this password opened ({old}) was changed "
                    "or removed meanwhile; nothing was changed"
                )
            new = repo.add_key(new_password)
            if old is not None:
                repo.remove_key(old)
        return new

    def _encrypted_repo(self, project_id: str) -> Repository:
        repo = self._repo(project_id)
        if not repo.encrypted():
            raise InvalidInput(f"project {project_id!r} is not encrypted: it has no keys")
        repo.check_format()
        repo.ready_for_writers()
        return repo

    def _writable(self, repo: Repository, *, locked: bool = False) -> Repository:
        """Before a command writes: the format must be one this version writes (config checked
        whole), and what dead processes left is repaired under the exclusive lock (held by the
        caller when `locked`)."""
        repo.check_format()
        repo.ready_for_writers()

        def log(level: str, msg: str, backup_id: str | None) -> None:
            self._log(repo.project_id, level, "recover", msg, backup_id)

        if locked:
            recover_locked(repo, log, self._clock)
        else:
            recover(repo, log, self._clock)
        return repo

    async def _in_thread(self, fn: Callable[[], T], ctx: OperationContext | None = None) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, fn)
        result = "failure"
        try:
            value = await asyncio.shield(future)
            result = "success"
            return value
        except Cancelled:
            result = "cancelled"
            raise
        except asyncio.CancelledError:
            result = "cancelled"
            if ctx is not None:
                ctx.cancel.set()
            with contextlib.suppress(BaseException):
                await future
            raise
        except OSError as exc:  # the contract: every failure is a NexusError
            raise from_os_error(exc) from exc
        finally:
            if ctx is not None:  # an operation (a read has no context)
                self.operations.record(ctx.project_id, ctx.operation, result)

    def _context(
        self, operation: str, project_id: str, backup_id: str | None, progress: Progress | None
    ) -> OperationContext:
        loop = asyncio.get_running_loop()

        def emit(event: ProgressEvent) -> None:
            if progress is not None:
                with contextlib.suppress(RuntimeError):  # loop closed
                    loop.call_soon_threadsafe(progress, event)

        return OperationContext(operation, project_id, backup_id, emit, clock=self._clock)

    def progress_of(self, project_id: str, backup_id: str) -> ProgressEvent | None:
        ctx = self._running.get((project_id, backup_id))
        if ctx is None or ctx.phase == "done":
            return None
        return ctx.snapshot()

    def _resolve_id(self, repo: Repository, backup_id: str) -> str:
        """`latest`: the newest completed backup that is not a restore's automatic
        checkpoint (else `restore latest` run twice would bring back the target as it was
        before the first restore); a checkpoint only when there is nothing else."""
        if backup_id == "latest":
            done = [m for m in _listed(repo) if m.status in RESTORABLE]
            if not done:
                raise NotFound(f"project {repo.project_id!r} has no completed backup")
            own = [m for m in done if m.tags.get("reason") != PRE_RESTORE] or done
            return max(own, key=lambda m: m.created_at).id
        check_id(backup_id, "backup_id")
        if not _SHORT_ID.fullmatch(backup_id):
            return backup_id
        ids = repo.backup_ids()
        if backup_id in ids:
            return backup_id
        matches = [i for i in ids if i.rsplit("-", 1)[-1].startswith(backup_id)]
        if len(matches) > 1:
            raise InvalidInput(
                f"{backup_id!r} names {len(matches)} backups of {repo.project_id!r} "
                f"({', '.join(sorted(matches)[:3])}{', …' if len(matches) > 3 else ''}): "
                "give more of the id"
            )
        return matches[0] if matches else backup_id

    # --- create ----------------------------------------------------------------------------

    async def create(
        self,
        req: CreateRequest,
        *,
        progress: Progress | None = None,
        on_created: Callable[[BackupMetadata], None] | None = None,
        make_project: bool = True,
    ) -> BackupMetadata:
        """Back up `req.data_dir`; returns the COMPLETED metadata, raises on failure. A
        project that does not exist is made, unless `make_project` is False (a scheduled run:
        a project deleted since the schedule listed it stays deleted, NotFound)."""
        ctx = self._context("create", req.project_id, None, progress)
        loop = asyncio.get_running_loop()

        def created(meta: BackupMetadata) -> None:
            if on_created is not None:
                snapshot = meta.model_copy(deep=True)
                loop.call_soon_threadsafe(on_created, snapshot)

        def work() -> BackupMetadata:
            meta = self.create_blocking(req, ctx, created, make_project=make_project)
            self._copy_after_backup(meta, ctx)
            return meta

        try:
            return await self._in_thread(work, ctx)
        except Cancelled:
            raise asyncio.CancelledError() from None

    def _copy_after_backup(self, meta: BackupMetadata, ctx: OperationContext) -> None:
        """The project's off-site twin (its `copy_to` setting): the new backup copied there
        at once. Its failure leaves the backup as complete as it is: it is logged, and told
        by `copy_outcome`; the next copy (or backup) sends what is missing."""
        if meta.type == BackupType.CHECKPOINT:
            return
        to = self._repo(meta.project_id).settings().get("copy_to")
        if not isinstance(to, str) or not to:
            return
        key = (meta.project_id, meta.id)
        try:
            outcome: CopyResult | str = self.copy_blocking(meta.project_id, to, [meta.id], ctx)
        except (NexusError, OSError) as exc:
            # a store's error says itself; a bare OSError ("[Errno 30] ...") is said in words
            why = exc if isinstance(exc, NexusError) else describe_os_error(exc)
            outcome = f"copy to {to} failed: {why}"
            self._log(meta.project_id, "WARNING", "copy", outcome, meta.id)
        self._copies[key] = outcome
        while len(self._copies) > 100:  # a long-running server keeps only the recent ones
            self._copies.pop(next(iter(self._copies)))

    def _copy_target(self, to: str, project_id: str) -> ObjectStore:
        """The store a copy of `project_id` goes to: never this repository, nor a directory
        inside it or holding it (its objects would be mixed with this one's), nor a store
        whose directory of that project is one of this repository's (a bind mount of one of
        its projects, or of its `backups/`, at the target's `backups/{project_id}`)."""
        if not to.strip():  # else the repository's own default (NEXUS_BACKUP_REPOSITORY)
            raise InvalidInput("the copy target is empty: name a directory or a store URL")
        if (bad := display.not_data(to)) is not None:
            # a setting later written into units and cron lines (schedule install) and logs
            raise InvalidInput(f"copy target {to!r} holds a control character ({bad!r}): refused")
        target = open_store(resolve_repository(to, self.root))
        same = _nested(target.url, self.store.url)
        mine, theirs = self.store.capabilities.local_root, target.capabilities.local_root
        if not same and mine is not None and theirs is not None:
            a, b = Path(os.path.realpath(mine)), Path(os.path.realpath(theirs))
            same = a == b or a in b.parents or b in a.parents or _same_tree(a, b)
            # what the copy writes: judged by device and inode too, where it would be made
            same = same or _same_tree(a, b / projects.PROJECTS / project_id)
        if same:
            raise InvalidInput(f"{to}: that is this repository or inside it; copy to another one")
        return target

    def copy_outcome(self, project_id: str, backup_id: str) -> CopyResult | str | None:
        """What the copy after backup `backup_id` did (this process): its result, the one
        line of its failure, or None when the project has no `copy_to`."""
        return self._copies.get((project_id, backup_id))

    async def settings(self, project_id: str) -> dict[str, object]:
        """The project's settings (`data_dir`, `copy_to`)."""
        return await self._in_thread(lambda: self._repo(project_id).settings())

    async def set_copy_to(self, project_id: str, to: str | None) -> None:
        """Copy every new backup of the project to `to` (a path or a store URL) right after
        it completes; None stops it. The target is checked now, not at the next backup."""

        def work() -> None:
            repo = self._writable(self._repo(project_id))
            url = self._copy_target(to, project_id).url if to else None
            # under the shared lock, as every write: another writer's recovery (exclusive)
            # never runs meanwhile, so it cannot take this write's temp file for a dead one's
            with locked(repo, "settings", exclusive=False):
                repo.save_settings(copy_to=url)
            self._log(project_id, "INFO", "settings", f"copy after each backup: {to or 'off'}")

        await self._in_thread(work)

    def _check_data_dir(self, data_dir: str, *, resolve: bool = True) -> Path:
        path = Path(os.path.expanduser(data_dir)).absolute()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise InvalidInput(f"data_dir {path}: no such directory") from None
        except NotADirectoryError:
            raise InvalidInput(f"data_dir {path}: a parent is not a directory") from None
        except OSError as exc:
            raise from_os_error(exc, "data_dir") from None
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"data_dir {path}: not a directory")
        if not os.access(path, os.R_OK | os.X_OK):
            raise NexusError(f"data_dir {path}: permission denied")
        return Path(os.path.realpath(path)) if resolve else path

    def create_blocking(
        self,
        req: CreateRequest,
        ctx: OperationContext,
        on_created: Callable[[BackupMetadata], None] | None = None,
        *,
        top_fd: int | None = None,
        make_project: bool = True,
    ) -> BackupMetadata:
        """The whole create, in the calling thread (also used for pre-restore checkpoints,
        which pass the target's descriptor as `top_fd`). With `req.confine_to`, the data
        directory is opened beneath an allowed directory without following symlinks and read
        only through that descriptor (invariant 7)."""
        if top_fd is None:
            if req.confine_to is not None:
                given = Path(os.path.abspath(os.path.expanduser(req.data_dir)))
                owned = open_dir_beneath(req.confine_to, given, what="data_dir")
            else:
                given = self._check_data_dir(req.data_dir)
                owned = open_data_dir(given)
            try:
                req = req.model_copy(update={"data_dir": str(given)})
                return self.create_blocking(
                    req, ctx, on_created, top_fd=owned, make_project=make_project
                )
            finally:
                os.close(owned)
        # Read through a descriptor, the directory is named as given: resolving the name again
        # could name a place a swapped symlink points to, which is not what is read.
        if req.created_at is not None and req.created_at < EARLIEST:
            raise InvalidInput(f"created_at {req.created_at.isoformat()} is before 1970")
        if req.created_at is not None and req.created_at > self._clock() + CLOCK_SKEW:
            # dated in the future, it would be the newest backup until then: retention would
            # keep it over every backup made meanwhile
            raise InvalidInput(
                f"created_at {req.created_at.isoformat()} is in the future; give a time that "
                "has passed (a backup made now needs none)"
            )
        data_dir = self._check_data_dir(req.data_dir, resolve=False)
        if req.backup_type != BackupType.CHECKPOINT:  # a restore judged its target so (I4)
            self._refuse_stored_data_dir(top_fd, data_dir)
        repo = self._writable(self._repo(req.project_id, create=make_project))
        if req.backup_type != BackupType.CHECKPOINT:
            self._check_data_dir_change(repo, data_dir, req.data_dir_change)
        backup_id = self._new_id() if req.created_at is None else new_backup_id(req.created_at)
        ctx.backup_id = backup_id
        left_packs: list[str] = []
        unsaved: list[BackupMetadata] = []  # a FAILED metadata the full disk had no room for
        try:
            with locked(repo, "create", exclusive=False, backup_id=backup_id):
                meta = self._create_locked(
                    repo, req, data_dir, backup_id, ctx, on_created, left_packs, unsaved, top_fd
                )
        finally:
            # after the release: the cleanup takes the exclusive lock for a moment
            if left_packs:
                with contextlib.suppress(NexusError, OSError):
                    drop_unindexed_packs(repo, left_packs)
            for failed in unsaved:  # with the failed run's packs gone there is room again
                with contextlib.suppress(NexusError, OSError):
                    repo.write_metadata(failed)
        if meta.type != BackupType.CHECKPOINT:  # a checkpoint is taken under a restore's lock
            self._retention_after_backup(repo, meta, ctx)
        return meta

    def _refuse_stored_data_dir(self, top_fd: int, data_dir: Path) -> None:
        """A backup never reads its own repository (design I13): judged from the descriptor
        that is read, so no symlink or swapped component hides where it is."""
        if lies_in(top_fd, self._stored_ids()):
            raise InvalidInput(
                f"data_dir {display.name(str(data_dir))} is, or lies inside, a repository or "
                f"the logs of {display.name(str(self.root))}: back up the directory that holds "
                "the data"
            )
        if dir_id(top_fd) in dir_ids([self.root]):
            raise InvalidInput(
                f"data_dir {display.name(str(data_dir))} is the nexus-backup root, which holds "
                "only its repositories and logs: back up the directory that holds the data"
            )

    @staticmethod
    def _check_data_dir_change(repo: Repository, data_dir: Path, allowed: bool) -> None:
        """A project backs up one directory: backing up another re-points it (and every file
        of the old one shows as removed), so it is done only when asked for."""
        remembered = repo.settings().get("data_dir")
        if remembered and remembered != str(data_dir) and not allowed:
            raise Conflict(
                f"project {repo.project_id!r} backs up {display.name(str(remembered))}, not "
                f"{display.name(str(data_dir))}: to back up the new directory from now on, pass "
                "--data-dir-change"
            )

    def _reference(self, repo: Repository, req: CreateRequest) -> BackupMetadata | None:
        if req.parent_backup_id:
            parent = repo.read_metadata(req.parent_backup_id)
            if parent.status not in RESTORABLE:
                raise Conflict(f"parent backup {parent.id} is {parent.status.value}, not completed")
            return parent
        # This host's latest (or one older than the host field): another host's files may
        # share inode numbers and times with ours (a clone of one image) without sharing
        # their bytes, and never share inodes otherwise, so its backup could only mislead
        # the reuse of unchanged entries or spare nothing (restic's rule: same host).
        host = req.host or HOSTNAME
        done = [m for m in _listed(repo) if m.status in RESTORABLE and m.host in (host, None)]
        return max(done, key=lambda m: m.created_at) if done else None

    def _create_locked(
        self,
        repo: Repository,
        req: CreateRequest,
        data_dir: Path,
        backup_id: str,
        ctx: OperationContext,
        on_created: Callable[[BackupMetadata], None] | None,
        left_packs: list[str],
        unsaved: list[BackupMetadata],
        top_fd: int | None,
    ) -> BackupMetadata:
        project = req.project_id
        reference = self._reference(repo, req)
        reuse = req.backup_type != BackupType.FULL and reference is not None
        tags = dict(req.tags)
        if req.name:
            tags["name"] = req.name
        elif req.backup_type == BackupType.CHECKPOINT and "name" not in tags:
            tags["name"] = f"checkpoint-{self._clock():%Y%m%d-%H%M%S}"
        meta = BackupMetadata(
            id=backup_id,
            project_id=project,
            type=req.backup_type,
            status=BackupStatus.PENDING,
            created_at=req.created_at or self._clock(),
            # a snapshot stands alone: it may reuse the latest backup's unchanged entries to
            # spare reading them, but records no parent (one meaning per type, README)
            parent_backup_id=(
                reference.id
                if reuse and reference and req.backup_type != BackupType.SNAPSHOT
                else None
            ),
            tags=tags,
            extra=req.extra,
            host=req.host or HOSTNAME,
            user=req.user or current_user(),
        )
        repo.write_metadata(meta)
        self._running[(project, backup_id)] = ctx
        if on_created is not None:
            on_created(meta)

        def log(level: str, message: str) -> None:
            self._log(project, level, "create", message, backup_id)

        log("INFO", f"{req.backup_type.value} backup of {display.name(str(data_dir))} started")
        if req.backup_type == BackupType.INCREMENTAL and reference is None:
            log("WARNING", "no completed backup to be incremental to: reading everything")
        # the repositories, the logs and the project's copy, wherever they lie inside the
        # data directory, are not read
        skip = set(dir_ids([*self._local_tops(), *self._stored_dirs(), *_local_copy(repo)]))
        # the backup pipeline (scan, walker, chunker): imported by the commands that back up
        from core.ops.backup import BackupPlan, describe_failure, run_backup

        plan = BackupPlan(
            data_dir=os.fsencode(data_dir),
            excludes=list(req.excludes),
            reference=reference,
            reuse=reuse,
            skip_dirs=skip,
            left_packs=left_packs,
            use_ignore_file=req.use_ignore_file,
            top_fd=top_fd,
            confined=req.confine_to is not None,
        )
        try:
            meta = run_backup(repo, meta, plan, ctx, log)
        except BaseException as exc:
            cancelled = isinstance(exc, Cancelled | KeyboardInterrupt)
            meta.status = BackupStatus.FAILED
            meta.error_message = "cancelled" if cancelled else describe_failure(exc)
            meta.completed_at = self._clock()
            with contextlib.suppress(Exception):
                repo.store.delete(repo.manifest_name(backup_id))
            try:
                repo.write_metadata(meta)
            except Exception:  # a full disk: tried again once this run's packs are dropped
                unsaved.append(meta)
            log("ERROR", f"backup failed: {meta.error_message}")
            if isinstance(exc, NexusError | KeyboardInterrupt):
                raise
            if isinstance(exc, OSError):
                raise from_os_error(exc, "backup") from exc
            raise
        finally:
            self._running.pop((project, backup_id), None)
        s = meta.stats
        log(
            "INFO",
            f"completed: {meta.files_count} files, {meta.size_bytes} bytes; read {s.bytes_read}, "
            f"stored {s.bytes_stored} new bytes; {s.files_new} new, {s.files_changed} changed, "
            f"{s.files_unchanged} unchanged, {s.files_removed} removed"
            + (f"; {len(s.warnings)} warnings" if s.warnings else ""),
        )
        if req.backup_type != BackupType.CHECKPOINT:  # a checkpoint never re-points the project
            with contextlib.suppress(OSError):
                repo.save_settings(data_dir=str(data_dir))
        return meta

    # --- restore ---------------------------------------------------------------------------

    async def restore(
        self, req: RestoreRequest, *, progress: Progress | None = None
    ) -> RestoreResult:
        ctx = self._context("restore", req.project_id, req.backup_id, progress)
        try:
            return await self._in_thread(lambda: self.restore_blocking(req, ctx), ctx)
        except Cancelled:
            raise asyncio.CancelledError() from None

    def restore_blocking(self, req: RestoreRequest, ctx: OperationContext) -> RestoreResult:
        """Restore never writes to the repository (invariant 3) except through the checkpoint
        it takes first, which is a backup like any other; "restoring" is told by its lock."""
        from core.ops.backup import describe_failure  # imported by the commands that restore
        from core.ops.restore import Restorer

        repo = self._repo(req.project_id)
        repo.check_format()
        backup_id = self._resolve_id(repo, req.backup_id)
        ctx.backup_id = backup_id
        req = req.model_copy(update={"backup_id": backup_id})
        project = req.project_id

        def log(level: str, message: str) -> None:
            self._log(project, level, "restore", message, backup_id)

        with reading(repo, "restore", backup_id):
            self._running[(project, backup_id)] = ctx
            try:
                # Read under the lock: a delete that ran before it took the lock is seen as gone.
                meta = repo.read_metadata(backup_id)
                if meta.status not in RESTORABLE:
                    raise Conflict(
                        f"backup {backup_id} is {meta.status.value}, not completed: "
                        "cannot restore it"
                    )
                if not req.dry_run:
                    where = display.name(str(req.restore_dir))
                    log("INFO", f"restore to {where} started (overwrite {req.overwrite})")

                def checkpoint(target: Path, target_fd: int) -> str | None:
                    """A backup of the target through the restore's own descriptor of it, with
                    no ignore file: it holds everything the restore may overwrite or delete
                    (invariant 4); it never re-points the project (a CHECKPOINT)."""
                    creq = CreateRequest(
                        project_id=project,
                        backup_type=BackupType.CHECKPOINT,
                        data_dir=str(target),
                        tags={"name": f"before-restore-{backup_id}"[:64], "reason": PRE_RESTORE},
                        use_ignore_file=False,
                    )
                    cctx = OperationContext("create", project, None, clock=self._clock)
                    cctx.cancel = ctx.cancel
                    try:
                        done = self.create_blocking(creq, cctx, top_fd=target_fd)
                    except ReadOnly as exc:
                        raise ReadOnly(
                            f"{exc}: no checkpoint of the target can be taken, so nothing was "
                            "changed (restore with --no-checkpoint to overwrite without one)"
                        ) from exc
                    log("INFO", f"checkpoint {done.id} taken of {target} before overwriting it")
                    return done.id

                stores, protect = self._protected()
                restorer = Restorer(
                    repo,
                    meta,
                    req,
                    ctx,
                    log,
                    checkpoint if req.checkpoint else None,
                    protect=protect,
                    stores=stores,
                    keep_files=dir_ids(self._password_files),
                )
                try:
                    result = restorer.run()
                except OSError as exc:
                    raise from_os_error(exc, "restore") from exc
                if result.undo is not None:
                    result.undo_hint = result.undo.command(
                        root=str(self.root), repository=self._repository_arg()
                    )
                if not req.dry_run:
                    log(
                        "ERROR" if result.files_damaged else "INFO",
                        f"restored {result.files_written} files ({result.bytes_written} bytes), "
                        f"{result.files_unchanged} unchanged, {result.files_skipped} skipped, "
                        f"{result.files_deleted} deleted; "
                        + (
                            f"{result.files_damaged} not restored (damaged in the repository)"
                            if result.files_damaged
                            else "verified"
                        ),
                    )
                return result
            except BaseException as exc:
                if not req.dry_run:
                    reason = "cancelled" if isinstance(exc, Cancelled) else describe_failure(exc)
                    log("ERROR", f"restore failed: {reason}")
                raise
            finally:
                self._running.pop((project, backup_id), None)

    # --- list, info, projects --------------------------------------------------------------

    async def list(
        self, project_id: str, filters: ListFilter | None = None
    ) -> list[BackupMetadata]:
        return await self._in_thread(lambda: self.list_blocking(project_id, filters))

    def list_blocking(
        self, project_id: str, filters: ListFilter | None = None
    ) -> list[BackupMetadata]:
        repo = self._repo(project_id)
        metas = live_status(repo, _listed(repo))
        if filters is not None:
            query = Query.from_filter(filters)
            metas = [m for m in metas if query.matches(m)]
        metas.sort(key=lambda m: (m.created_at, m.id), reverse=True)
        return metas

    def _repository_arg(self) -> str | None:
        """What `--repo` must say to name these repositories again (None: under the root)."""
        local = self.store.capabilities.local_root
        return None if local is not None and Path(local) == self.root else self.store.url

    def _local_tops(self) -> list[Path]:
        """The local directories of this manager's repositories: the root, and the
        repository's own directory when it is local and elsewhere."""
        tops = [self.root]
        local = self.store.capabilities.local_root
        if local is not None and Path(local) != self.root:
            tops.append(Path(local))
        return tops

    def _stored_dirs(self) -> list[Path]:
        """The directories of this manager's repositories and of the logs: no restore target
        and no data directory is, or lies inside, one of them (design I4)."""
        # and a repository kept elsewhere (`_local_tops` beyond the root)
        return [self.root / "backups", self.root / "logs", *self._local_tops()[1:]]

    def _stored_ids(self) -> frozenset[tuple[int, int]]:
        """(device, inode) of every directory of the repositories and the logs
        (`_stored_dirs`): a restore target or a data directory may be none of them, nor lie
        beneath one, reached by whatever path (a bind mount of one)."""
        return every_dir_id(self._stored_dirs())

    def refuse_output_inside(self, fd: int, what: str) -> None:
        """A command that writes a backup's bytes to `fd` (dump's and cat's stdout, opened by
        the shell: `>> backups/web/config.json`) refuses, before writing anything, when it is
        a file inside a repository or the logs (design I3): judged from the directory the
        kernel names for the open file, by device and inode (`lies_in`), so neither a link
        on the way nor a bind mount hides it; so is one inside another repository's project
        (its config.json says so, as restore judges, I4). A pipe, a terminal, a device, a
        file elsewhere or one deleted since it was opened passes."""
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        if not where.startswith("/") or where.endswith(" (deleted)"):
            return
        try:
            parent = os.open(os.path.dirname(where), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            # and any other repository's project, told by its config (a copy-to twin)
            inside = lies_in(parent, self._stored_ids(), marker.is_project_dir)
        finally:
            os.close(parent)
        if inside:
            raise InvalidInput(
                f"{what}: its output {display.name(where)} is a file inside a nexus-backup "
                f"repository or the logs of {display.name(str(self.root))}: nothing was written "
                "to it; send it to a file elsewhere or a pipe"
            )

    def _protected(self) -> tuple[frozenset[tuple[int, int]], frozenset[tuple[int, int]]]:
        """`_stored_ids`, and those with the nexus root and everything in it: the directories
        no restore may delete, replace or write into, wherever they lie (a bind mount inside
        the target)."""
        stored = self._stored_ids()
        return stored, stored | every_dir_id([self.root], prune=stored)

    async def info(self, project_id: str, backup_id: str) -> BackupInfo:
        return await self._in_thread(lambda: self.info_blocking(project_id, backup_id))

    def info_blocking(self, project_id: str, backup_id: str) -> BackupInfo:
        repo = self._repo(project_id)
        backup_id = self._resolve_id(repo, backup_id)
        [meta] = live_status(repo, [repo.read_metadata(backup_id)])
        summary = None
        if meta.status in RESTORABLE:
            with contextlib.suppress(Exception):
                header = mf.read_header(repo.read_manifest(backup_id))
                summary = ManifestSummary(
                    source=header.get("source"),
                    hostname=header.get("hostname"),
                    files=meta.files_count,
                    dirs=meta.stats.dirs_count,
                    symlinks=meta.stats.symlinks_count,
                    size_bytes=meta.size_bytes,
                    chunks=meta.stats.chunks_total,
                )
        chain: list[str] = []
        deleted: list[str] = []
        parent = meta.parent_backup_id
        while parent and parent not in chain and len(chain) < 100:
            chain.append(parent)
            try:
                parent = repo.read_metadata(parent).parent_backup_id
            except NotFound:
                deleted.append(parent)
                break
            except NexusError:
                break
        return BackupInfo(
            metadata=meta,
            manifest=summary,
            parent_chain=chain,
            deleted_parents=deleted,
            last_verify=repo.read_verify(backup_id),
            config_problem=_config_problem(repo),
        )

    async def damaged_metadata(self, project_id: str) -> list[str]:
        """Ids of the backups whose metadata.json is missing or cannot be read (`list`
        leaves them out)."""
        return await self._in_thread(lambda: self._repo(project_id).list_metadata()[1])

    async def config_problem(self, project_id: str) -> str | None:
        """Why the project's config.json cannot be read (every restore and backup of it
        then fails, while its backups still list), or None."""
        return await self._in_thread(lambda: _config_problem(self._repo(project_id)))

    async def projects(self, only: Collection[str] | None = None) -> list[ProjectSummary]:
        """Every project's summary, or (`only`) those of the named ones that exist: a
        summary reads all of a project's metadata, so a view refreshes what changed."""
        return await self._in_thread(lambda: self.projects_blocking(only))

    def projects_blocking(self, only: Collection[str] | None = None) -> list[ProjectSummary]:
        out = []
        names = projects.listed(self.store)
        for name in names if only is None else [n for n in names if n in only]:
            try:
                repo = self._repo(name)
            except WrongPassword:  # listed, as locked: its figures are sealed
                out.append(ProjectSummary(project_id=name, encrypted=True, locked=True))
                continue
            except NotFound:  # not a project (any more): nothing in it, or being deleted
                continue
            except (NexusError, ValueError) as exc:  # listed with why: a project that
                # vanished from a listing would read as deleted (design I3)
                out.append(ProjectSummary(project_id=name, unreadable=str(exc) or "damaged"))
                continue
            metas = live_status(repo, _listed(repo))
            last = max(metas, key=lambda m: m.created_at) if metas else None
            out.append(
                ProjectSummary(
                    project_id=name,
                    unreadable=_config_problem(repo),
                    backups=len(metas),
                    last_backup_at=last.created_at if last else None,
                    last_status=last.status if last else None,
                    stored_bytes=repo.stored_bytes(),
                    data_dir=repo.settings().get("data_dir"),
                    encrypted=repo.encrypted(),
                    **self._schedule_fields(repo, metas),
                )
            )
        return out

    # --- scheduled runs (issue 14: core/manage/runs.py; run-due itself: core/scheduler.py) --

    def _schedule_fields(self, repo: Repository, metas: list[BackupMetadata]) -> dict:
        """A summary's schedule, next run, overdue mark and last run (none if unreadable)."""
        try:
            st = runs.state_of(
                repo.project_id, self._policy(repo), runs.last_run(repo), metas, self._clock()
            )
        except (NexusError, OSError):
            return {}
        return {
            "schedule": st.schedule,
            "next_run": None if st.state is None else st.state.next_run,
            "overdue": st.state is not None and st.state.overdue,
            "last_run": st.last_run,
        }

    def schedule_state_blocking(self, project_id: str, now: datetime) -> ScheduleState:
        """Where the project stands against its schedule at `now` (its policy, last run,
        whether a run is owed and, if so, whether a backup of it is running now)."""
        repo = self._repo(project_id)
        policy, last = self._policy(repo), runs.last_run(repo)
        return runs.state_of(
            project_id, policy, last, _listed(repo), now, lambda: runs.backup_running(repo)
        )

    def run_lock(self, project_id: str) -> contextlib.AbstractContextManager:
        """The project's run lock (Busy when another scheduled run holds it): see runs.run_lock."""
        return runs.run_lock(self._writable(self._repo(project_id)))

    def record_run_blocking(self, project_id: str, run: LastRun) -> None:
        """Remember the project's last scheduled run (under its lock)."""
        runs.record(self._writable(self._repo(project_id)), run)

    async def create_project(
        self, project_id: str, data_dir: str | None = None, *, password: str | None = None
    ) -> ProjectSummary:
        """A new project (or the one that exists, as it is); with `password`, a new one is
        encrypted under it, whatever this manager's `encrypt`."""

        def work() -> ProjectSummary:
            path = self._check_data_dir(data_dir) if data_dir else None
            repo = self._repo(project_id, create=True, password=password)
            if path is not None:
                with locked(repo, "settings", exclusive=False):
                    repo.save_settings(data_dir=str(path))
            return ProjectSummary(
                project_id=project_id,
                data_dir=str(path) if path else None,
                encrypted=repo.encrypted(),
            )

        return await self._in_thread(work)

    # --- delete a whole project ------------------------------------------------------------

    def _forget_cached(self, project_id: str) -> None:
        """The project's open repository and browsed manifests, after it was deleted or
        renamed (its next use opens it afresh, or finds it gone)."""
        with self._repos_lock:
            self._repos.pop(project_id, None)
        for key in [k for k in self._manifests if k[0] == project_id]:
            self._manifests.pop(key, None)

    async def delete_project(
        self, project_id: str, *, backups: int | None = None
    ) -> ProjectDeleteResult:
        return await self._in_thread(
            lambda: self.delete_project_blocking(project_id, backups=backups)
        )

    def delete_project_blocking(
        self, project_id: str, *, backups: int | None = None
    ) -> ProjectDeleteResult:
        """Delete a project and every one of its backups (invariant I11). `backups`: the
        count the person confirming was shown; a different count now (a backup made
        meanwhile) is refused. Refused too: a protected backup, a repository format this
        version does not know, an encrypted project not unlocked, a directory that is not a
        nexus-backup project. The project's logs are kept."""
        store = projects.project_store(self.store, project_id)
        resumed = store.exists(projects.DELETING)
        if not resumed and not projects.project_exists(self.store, project_id):
            raise NotFound(f"unknown project {project_id!r}")
        # a creation killed between its key object and its config: nothing to unlock or list
        half = not resumed and half_made(store)
        repo = None if resumed or half else self._repo(project_id)

        def refuse_unless_deletable() -> tuple[int, int]:
            """The backups listed and those no list shows (damaged metadata, removed by
            retention): `backups` is compared with the count a list shows, the one the
            person confirming was shown (a backup made meanwhile changes it)."""
            assert repo is not None
            repo.check_format()  # a directory that is not ours, or of a newer version
            metas, damaged = repo.list_metadata()  # encrypted and locked: WrongPassword
            listed = len(_shown(metas))
            if backups is not None and backups != listed:
                raise Conflict(
                    f"project {project_id!r} now has {plural(listed, 'backup')}, not "
                    f"{backups}: look again before deleting it"
                )
            protected = [m.id for m in metas if m.protected]
            if protected:
                raise Conflict(
                    f"project {project_id!r} has {plural(len(protected), 'protected backup')} "
                    f"({', '.join(protected[:3])}): unprotect them first to delete it"
                )
            return listed, len(metas) - listed + len(damaged)

        if repo is not None:
            refuse_unless_deletable()  # before waiting for the lock: a quick answer
            repo.ready_for_writers()
        result = ProjectDeleteResult(project_id=project_id, resumed=resumed)
        lock = locks.acquire(
            store,
            exclusive=True,
            operation="delete-project",
            project_id=project_id,
            timeout=LOCK_TIMEOUT,
        )
        with lock:
            if repo is not None:
                result.backups_deleted, result.unlisted_deleted = refuse_unless_deletable()
                store.put(projects.DELETING, b"")
            elif half:
                if not half_made(store):  # written into meanwhile: look again
                    raise Conflict(f"project {project_id!r} changed meanwhile: look again")
                store.put(projects.DELETING, b"")
            result.objects_deleted, result.bytes_deleted, result.kept = projects.delete_objects(
                store
            )
        projects.finish_delete(self.store, project_id)
        self._forget_cached(project_id)
        self._log(
            project_id,
            "INFO",
            "delete-project",
            f"project deleted: {result.backups_text()}, "
            f"{result.bytes_deleted} bytes{' (an earlier delete finished)' if resumed else ''}",
        )
        return result

    # --- stats: history and totals (issue 15; core.stats computes them) ----------------------

    async def stats(self, project_id: str, since: datetime | None = None) -> ProjectStats:
        return await self._in_thread(lambda: self.stats_blocking(project_id, since))

    def stats_blocking(self, project_id: str, since: datetime | None = None) -> ProjectStats:
        """One project's history and totals from its metadata, the pack listing and the
        newest verify record (no pack read)."""
        repo = self._repo(project_id)
        metas = live_status(repo, _listed(repo))
        return st.project_stats(
            project_id,
            metas,
            stored_bytes=repo.stored_bytes(),
            last_verify=st.last_verify(repo, [m.id for m in metas]),
            since=since,
        )

    async def repository_stats(self, since: datetime | None = None) -> RepositoryStats:
        return await self._in_thread(lambda: self.repository_stats_blocking(since))

    def repository_stats_blocking(self, since: datetime | None = None) -> RepositoryStats:
        """Every project's totals (an encrypted one not opened: listed as locked)."""
        totals = []
        for name in projects.listed(self.store):
            try:
                totals.append(self.stats_blocking(name, since).totals)
            except WrongPassword:
                totals.append(st.ProjectTotals(project_id=name, locked=True))
            except NotFound:  # not a project (any more)
                continue
            except (NexusError, ValueError) as exc:  # listed with why, as `projects` does
                totals.append(st.ProjectTotals(project_id=name, unreadable=str(exc) or "damaged"))
        return st.repository_stats(totals, since)

    # --- rename a project ------------------------------------------------------------------

    async def rename_project(self, project_id: str, new_id: str) -> ProjectSummary:
        return await self._in_thread(lambda: self.rename_project_blocking(project_id, new_id))

    def rename_project_blocking(self, project_id: str, new_id: str) -> ProjectSummary:
        """Rename a project: its directory, in one rename, under its exclusive lock (nothing
        else runs meanwhile; what it holds, ids and encryption keys included, moves whole:
        objects are named relative to the project). Its backups' metadata then name it by
        where it lives (Repository.read_metadata), and its logs follow. Only on a local disk:
        object storage has no rename."""
        check_id(new_id, "project_id")
        _new_project_id(new_id)
        if new_id == project_id:
            raise InvalidInput(f"project {project_id!r} already has that name")
        rename = getattr(self.store.sub(projects.PROJECTS), "rename_child", None)
        if rename is None:
            raise InvalidInput(
                "renaming a project needs its repository on a local disk (object storage "
                "has no rename)"
            )
        repo = self._repo(project_id)
        repo.check_format()
        repo.ready_for_writers()
        with locks.acquire(
            repo.store,
            exclusive=True,
            operation="rename",
            project_id=project_id,
            timeout=LOCK_TIMEOUT,
        ) as lock:
            if projects.project_exists(self.store, new_id):
                raise Conflict(f"project {new_id!r} already exists")
            try:
                rename(project_id, new_id)
            except FileExistsError:
                raise Conflict(f"project {new_id!r} already exists") from None
            except OSError as exc:
                raise from_os_error(exc, f"rename {project_id} to {new_id}") from exc
        # the lock moved with the directory: released where it was, removed where it is
        projects.project_store(self.store, new_id).delete(lock.name)
        self._forget_cached(project_id)
        self.logger.rename_project(project_id, new_id)
        self._log(new_id, "INFO", "project", f"project renamed from {project_id}")
        return self.projects_blocking(only=[new_id])[0]

    # --- copy to another repository ---------------------------------------------------------

    async def copy(
        self,
        project_id: str,
        to: str,
        backup_ids: Collection[str] | None = None,
        *,
        progress: Progress | None = None,
    ) -> CopyResult:
        """Copy backups (default: every completed one) into the repository `to` (a path or a
        store URL): only chunks it lacks travel; ids and metadata are kept; a rerun after a
        kill copies what is missing."""
        ctx = self._context("copy", project_id, None, progress)
        ids = list(backup_ids) if backup_ids is not None else None
        return await self._in_thread(lambda: self.copy_blocking(project_id, to, ids, ctx), ctx)

    def copy_blocking(
        self, project_id: str, to: str, backup_ids: list[str] | None, ctx: OperationContext
    ) -> CopyResult:
        src = self._repo(project_id)
        src.check_format()
        for b in backup_ids or ():
            src.read_metadata(self._resolve_id(src, b))  # unknown: NotFound, no target made
        target = self._copy_target(to, project_id)
        dst = Repository(self.root, project_id, projects.project_store(target, project_id))
        try:
            if dst.exists() or not self._init(dst, like=src.config, target=True):
                self._unlock(dst, target=True)
        except WrongPassword as exc:  # say which of the two did not open
            raise TargetWrongPassword(f"the copy's target {target.url}: {exc}") from None
        self._writable(dst)
        result = CopyResult(project_id=project_id, target=target.url)
        if src.encrypted() and not dst.encrypted():
            # the project there was made plain before: copied as asked, never silently
            result.warnings.append(
                f"{target.url}: its project {project_id!r} is not encrypted, so what is copied "
                "there is stored in plain (names and contents readable by whoever reads that "
                "storage); copy into a new target to keep the backups encrypted"
            )
            self._log(project_id, "WARNING", "copy", result.warnings[-1])
        with reading(src, "copy"):
            if backup_ids is None:
                metas = [m for m in _listed(src) if m.status in RESTORABLE]
            else:
                metas = [src.read_metadata(self._resolve_id(src, b)) for b in backup_ids]
            for meta in sorted(metas, key=lambda m: (m.created_at, m.id)):
                ctx.check()
                ctx.backup_id = meta.id
                if not copy.needs_copy(dst, meta.id):
                    result.already_there.append(meta.id)
                    continue
                with locked(dst, "copy", exclusive=False, backup_id=meta.id):
                    done = copy.copy_backup(src, dst, meta, ctx)
                result.copied.append(done)
                result.bytes_sent += done.bytes_sent
                self._log(
                    project_id,
                    "INFO",
                    "copy",
                    f"copied to {target.url}: {done.chunks_sent} chunks sent "
                    f"({done.bytes_sent} bytes), {done.chunks_present} already there",
                    meta.id,
                )
        ctx.finish()
        return result

    # --- retention: policy, forget, protect, undelete ------------------------------------

    def policy_blocking(self, project_id: str) -> Policy | None:
        """The project's stored retention policy (None: none). A damaged policy.json is
        Damaged: one line, never read as no policy."""
        return self._policy(self._repo(project_id))

    async def policy(self, project_id: str) -> Policy | None:
        return await self._in_thread(lambda: self.policy_blocking(project_id))

    @staticmethod
    def _policy(repo: Repository) -> Policy | None:
        raw = repo.policy()
        if raw is None:
            return None
        try:
            return Policy.model_validate(raw)
        except ValueError as exc:
            first = str(exc).splitlines()[1:3]
            raise Damaged(
                f"project {repo.project_id!r}: policy.json is damaged ({' '.join(first)}); "
                f"{POLICY_REMEDY}"
            ) from None

    def set_policy_blocking(
        self, project_id: str, policy: Policy | None, *, merge: dict | None = None
    ) -> Policy | None:
        """Store the policy whole (None clears it), or with `merge` change only the rules it
        names, keeping the others (compare-and-swap: two hosts setting different rules at
        once both land). A policy without a rule is refused."""
        repo = self._writable(self._repo(project_id))

        def change(current: dict | None) -> dict | None:
            if merge is None:
                return None if policy is None else policy.model_dump()
            new = Policy.model_validate({**(current or {}), **merge})
            if new.blank():
                raise InvalidInput(
                    "the policy would have no rule: give a --keep-... rule or a --schedule"
                )
            return new.model_dump()

        if policy is not None and policy.blank():
            raise InvalidInput("the policy has no rule: give at least one --keep-... rule")
        # under the shared lock: another writer's recovery (exclusive) never runs meanwhile,
        # so it cannot take this write's temp file for a dead process's
        with locked(repo, "policy", exclusive=False):
            stored = repo.save_policy(change, whole=merge is None)
        result = None if stored is None else Policy.model_validate(stored)
        text = "cleared" if result is None else " ".join(result.describe())
        self._log(project_id, "INFO", "policy", f"retention policy {text}")
        return result

    async def set_policy(
        self, project_id: str, policy: Policy | None, *, merge: dict | None = None
    ) -> Policy | None:
        return await self._in_thread(
            lambda: self.set_policy_blocking(project_id, policy, merge=merge)
        )

    async def forget(
        self,
        project_id: str,
        policy: Policy | None = None,
        *,
        dry_run: bool = False,
        max_unused: float = MAX_UNUSED,
        progress: Progress | None = None,
        removing: Collection[str] | None = None,
    ) -> ForgetResult:
        """Apply `policy` (default: the stored one) to the project: see `forget_blocking`.
        `removing`: the backups the person confirming was shown removed; a policy that now
        removes any other (a backup made meanwhile) is refused, removing nothing."""
        ctx = self._context("forget", project_id, None, progress)
        return await self._in_thread(
            lambda: self._forget(project_id, policy, dry_run, ctx, max_unused, removing=removing),
            ctx,
        )

    def forget_blocking(
        self,
        project_id: str,
        policy: Policy | None = None,
        *,
        dry_run: bool = False,
        max_unused: float = MAX_UNUSED,
    ) -> ForgetResult:
        ctx = OperationContext("forget", project_id, None, clock=self._clock)
        return self._forget(project_id, policy, dry_run, ctx, max_unused)

    def _forget(
        self,
        project_id: str,
        policy: Policy | None,
        dry_run: bool,
        ctx: OperationContext,
        max_unused: float = MAX_UNUSED,
        wait: bool = True,
        just_made: str | None = None,
        removing: Collection[str] | None = None,
    ) -> ForgetResult:
        """Every backup's decision under the policy; unless `dry_run`, under the exclusive
        lock (as delete: no backup is being written or restored meanwhile), the removed ones
        soft-removed, those past their grace period and failed ones deleted, and one reclaim.
        A policy whose rules keep none of the completed backups is refused (RetentionRefused).
        With `removing` (what a confirmation named), a plan that removes any backup not in it
        is refused (Conflict) before anything is written: the confirmation showed it kept."""
        repo = self._repo(project_id)
        if policy is None:
            policy = self._policy(repo)
            if policy is None or not policy.retains():
                raise InvalidInput(
                    f"project {project_id!r} has no retention policy: give --keep-... rules "
                    "or set one with: policy set"
                )
        if dry_run:
            # every readable backup, as the real run reads them: those removed before and
            # past their grace period are what it deletes for good (or lists again), so the
            # preview must see them too (invariant 9: the preview names the same sets)
            with reading(repo, "forget"):
                metas, unreadable = repo.list_metadata()
                result = self._forget_plan(repo, policy, live_status(repo, metas), True)
                result.unreadable = unreadable
                return result
        with locked(repo, "forget", exclusive=True, timeout=None if wait else 0):
            self._writable(repo, locked=True)
            # after a backup (wait=False) the space is not estimated: that reads every kept
            # manifest, at each backup; the reclaim says what was freed
            metas, unreadable = repo.list_metadata()
            result = self._forget_plan(
                repo, policy, metas, False, estimate=wait, just_made=just_made
            )
            result.unreadable = unreadable
            if removing is not None:
                _refuse_unconfirmed(result, removing)
            self._forget_apply(repo, result, ctx, max_unused)
        return result

    def _forget_plan(
        self,
        repo: Repository,
        policy: Policy,
        metas: list[BackupMetadata],
        dry_run: bool,
        *,
        estimate: bool = True,
        just_made: str | None = None,
    ) -> ForgetResult:
        now = self._clock()
        live = [m for m in metas if m.removed_at is None]
        expired = [m for m in metas if m.removed_at is not None and not fg.in_grace(m, now)]
        back = fg.to_reinstate(live, expired)
        if back is not None:
            expired.remove(back)
            back = back.model_copy()
            fg.undelete_fields(back)
            live.append(back)
        decisions = evaluate(live, policy, just_made=just_made, now=now)
        removed = {d.backup_id for d in decisions if not d.keep}
        by_id = {m.id: m for m in live}
        # a failed backup holds nothing to restore, and with no grace nothing waits
        purged = [m.id for m in expired] + [
            i for i in removed if by_id[i].status not in RESTORABLE or policy.grace_hours == 0
        ]
        result = ForgetResult(
            project_id=repo.project_id,
            dry_run=dry_run,
            policy=policy,
            decisions=decisions,
            removed=sorted(removed - set(purged)),
            purged=sorted(purged),
            reinstated=[] if back is None else [back.id],
        )
        gone = {*removed, *purged}
        if not gone:
            result.bytes_freed = 0
        elif estimate:
            kept = [m for m in metas if m.id not in gone]
            with contextlib.suppress(Damaged):
                result.bytes_freed = fg.space_freed(
                    repo, [m for m in [*live, *expired] if m.id in gone], kept
                )
        return result

    def _forget_apply(
        self, repo: Repository, result: ForgetResult, ctx: OperationContext, max_unused: float
    ) -> None:
        project = repo.project_id
        now = self._clock()
        reasons = {d.backup_id: d for d in result.decisions}
        for backup_id in result.reinstated:
            meta = repo.read_metadata(backup_id)
            fg.undelete_fields(meta)
            repo.write_metadata(meta)
            self._log(
                project,
                "WARNING",
                "forget",
                "listed again: its grace period is over, but it is the newest completed "
                "backup (the newer ones that made retention remove it were deleted)",
                backup_id,
            )
        for backup_id in result.removed:
            meta = repo.read_metadata(backup_id)
            fg.soft_remove(repo, meta, reasons[backup_id], now, result.policy.grace_hours)
            self._log(
                project,
                "INFO",
                "forget",
                f"removed by retention ({meta.removed_reason}); restorable until "
                f"{meta.purge_after:%Y-%m-%d %H:%M} UTC (undelete brings it back)",
                backup_id,
            )

        def log(level: str, msg: str, backup_id: str | None) -> None:
            self._log(project, level, "forget", msg, backup_id)

        result.purged = fg.purge(repo, result.purged, log)
        for backup_id in result.purged:
            self._manifests.pop((project, backup_id), None)
            why = reasons[backup_id].reasons if backup_id in reasons else ["grace period over"]
            log("INFO", f"deleted by retention ({'; '.join(why)})", backup_id)
        if not result.purged:
            ctx.finish()
            return
        done = DeleteResult(project_id=project, backup_id="-")
        try:
            reclaim(repo, done, ctx, max_unused)
        except (OSError, NexusError) as exc:
            result.reclaim_refused = why_stopped(exc)
            log("WARNING", f"space reclaim failed: {result.reclaim_refused}", None)
            return
        result.bytes_reclaimed = done.bytes_reclaimed
        result.packs_deleted, result.packs_rewritten = done.packs_deleted, done.packs_rewritten
        log(
            "INFO",
            f"reclaimed {done.bytes_reclaimed} bytes ({done.packs_deleted} packs deleted, "
            f"{done.packs_rewritten} rewritten)",
            None,
        )
        if done.chunks_repaired:
            log("WARNING", _repaired(done), None)

    def _retention_after_backup(
        self, repo: Repository, meta: BackupMetadata, ctx: OperationContext
    ) -> None:
        """A project with a policy has it applied after each completed backup, in the same
        run (every face gets it). Its failure (a busy project, a refused policy) leaves the
        backup as it is: logged, and told by `retention_outcome`."""
        try:
            policy = self._policy(repo)
        except Damaged as exc:
            outcome: ForgetResult | str = f"retention not applied: {exc}"
        else:
            if policy is None or not policy.retains():  # a schedule alone removes nothing
                return
            fctx = OperationContext("forget", repo.project_id, None, clock=self._clock)
            fctx.cancel = ctx.cancel
            try:  # never waits: another backup running now is not held up, nor this one
                outcome = self._forget(
                    repo.project_id, policy, False, fctx, wait=False, just_made=meta.id
                )
            except Busy:
                outcome = (
                    "retention not applied: the project is busy (applied after the next backup, "
                    "or run forget)"
                )
            except (NexusError, OSError) as exc:
                outcome = f"retention not applied: {exc}"
        if isinstance(outcome, str):
            self._log(repo.project_id, "WARNING", "forget", outcome, meta.id)
        else:
            self._log(repo.project_id, "INFO", "forget", outcome.summary(), meta.id)
        self._retentions[(repo.project_id, meta.id)] = outcome
        while len(self._retentions) > 100:
            self._retentions.pop(next(iter(self._retentions)))

    def retention_outcome(self, project_id: str, backup_id: str) -> ForgetResult | str | None:
        """What the policy applied after backup `backup_id` did (this process): its result,
        the one line of why it was not applied, or None when the project has no policy."""
        return self._retentions.get((project_id, backup_id))

    def _mark(
        self, project_id: str, backup_id: str, op: str, change: Callable[[BackupMetadata], None]
    ) -> BackupMetadata:
        """Change a backup's metadata under the shared lock (which excludes delete and
        forget, so a backup being deleted is never written back)."""
        repo = self._writable(self._repo(project_id))
        backup_id = self._resolve_id(repo, backup_id)
        with locked(repo, op, exclusive=False, backup_id=backup_id):
            meta = repo.read_metadata(backup_id)
            if meta.status not in RESTORABLE:
                raise Conflict(f"backup {backup_id} is {meta.status.value}, not completed")
            change(meta)
            repo.write_metadata(meta)
        done = {"protect": "protected", "unprotect": "unprotected", "undelete": "listed again"}
        self._log(project_id, "INFO", op, f"backup {done.get(op, op)}", backup_id)
        return meta

    def protect_blocking(self, project_id: str, backup_id: str) -> BackupMetadata:
        """Never removed by any retention rule, and refused by delete until unprotected."""

        def change(meta: BackupMetadata) -> None:
            if meta.removed_at is not None:
                raise Conflict(f"backup {meta.id} was removed by retention: undelete it first")
            meta.protected = True

        return self._mark(project_id, backup_id, "protect", change)

    def unprotect_blocking(self, project_id: str, backup_id: str) -> BackupMetadata:
        def change(meta: BackupMetadata) -> None:
            meta.protected = False

        return self._mark(project_id, backup_id, "unprotect", change)

    def undelete_blocking(self, project_id: str, backup_id: str) -> BackupMetadata:
        """Bring back a backup retention removed, while its grace period lasts (after it, the
        next forget deletes it for good). The next forget judges it again: protect it, or
        change the policy, to keep it."""

        def change(meta: BackupMetadata) -> None:
            if meta.removed_at is None:
                raise Conflict(f"backup {meta.id} was not removed: nothing to undelete")
            fg.undelete_fields(meta)

        return self._mark(project_id, backup_id, "undelete", change)

    async def protect(self, project_id: str, backup_id: str) -> BackupMetadata:
        return await self._in_thread(lambda: self.protect_blocking(project_id, backup_id))

    async def unprotect(self, project_id: str, backup_id: str) -> BackupMetadata:
        return await self._in_thread(lambda: self.unprotect_blocking(project_id, backup_id))

    async def undelete(self, project_id: str, backup_id: str) -> BackupMetadata:
        return await self._in_thread(lambda: self.undelete_blocking(project_id, backup_id))

    def removed_blocking(self, project_id: str) -> list[BackupMetadata]:
        """The backups retention removed that are still in their grace period (restorable,
        `undelete` brings them back), newest first."""
        repo = self._repo(project_id)
        now = self._clock()
        metas = [m for m in repo.list_metadata()[0] if fg.in_grace(m, now)]
        return sorted(metas, key=lambda m: (m.created_at, m.id), reverse=True)

    async def removed(self, project_id: str) -> list[BackupMetadata]:
        return await self._in_thread(lambda: self.removed_blocking(project_id))

    # --- delete, verify --------------------------------------------------------------------

    async def delete(
        self, project_id: str, backup_id: str, *, progress: Progress | None = None
    ) -> DeleteResult:
        ctx = self._context("delete", project_id, backup_id, progress)
        return await self._in_thread(lambda: self.delete_blocking(project_id, backup_id, ctx), ctx)

    def delete_blocking(
        self, project_id: str, backup_id: str, ctx: OperationContext
    ) -> DeleteResult:
        repo = self._repo(project_id)
        backup_id = self._resolve_id(repo, backup_id)
        self._metadata_for_delete(repo, backup_id)
        with locked(repo, "delete", exclusive=True, backup_id=backup_id):
            # the exclusive lock excludes every restore: no backup is being read meanwhile
            self._writable(repo, locked=True)
            self._metadata_for_delete(repo, backup_id)
            repo.delete_backup_files(backup_id)
            self._manifests.pop((project_id, backup_id), None)
            self._log(project_id, "INFO", "delete", "backup deleted", backup_id)
            result = DeleteResult(project_id=project_id, backup_id=backup_id)
            try:
                reclaim(repo, result, ctx)
            except (OSError, NexusError) as exc:
                result.reclaim_refused = why_stopped(exc)
                self._log(
                    project_id,
                    "WARNING",
                    "reclaim",
                    f"space reclaim failed: {result.reclaim_refused}",
                    backup_id,
                )
            else:
                self._log(
                    project_id,
                    "INFO",
                    "reclaim",
                    f"reclaimed {result.bytes_reclaimed} bytes "
                    f"({result.packs_deleted} packs deleted, {result.packs_rewritten} rewritten)",
                    backup_id,
                )
                if result.chunks_repaired:
                    self._log(project_id, "WARNING", "reclaim", _repaired(result), backup_id)
            return result

    @staticmethod
    def _metadata_for_delete(repo: Repository, backup_id: str) -> BackupMetadata | None:
        """The metadata, or None when it is damaged: a damaged backup can still be deleted
        (NotFound when there is no such backup at all). A protected backup is refused: the
        protection is there to survive a mistaken command, so it is lifted on purpose first."""
        try:
            meta = repo.read_metadata(backup_id)
            if meta.protected:
                raise Conflict(f"backup {backup_id} is protected: unprotect it first to delete it")
            return meta
        except Damaged:
            return None
        except NotFound:
            if backup_id in repo.backup_ids():  # metadata lost: deleted on purpose only
                return None
            raise

    async def verify(
        self,
        project_id: str,
        backup_id: str,
        *,
        quick: bool = False,
        progress: Progress | None = None,
    ) -> VerifyResult:
        ctx = self._context("verify", project_id, backup_id, progress)
        try:
            return await self._in_thread(
                lambda: self.verify_blocking(project_id, backup_id, quick, ctx), ctx
            )
        except Cancelled:
            raise asyncio.CancelledError() from None

    def verify_blocking(
        self, project_id: str, backup_id: str, quick: bool, ctx: OperationContext
    ) -> VerifyResult:
        repo = self._repo(project_id)
        backup_id = self._resolve_id(repo, backup_id)
        meta = repo.read_metadata(backup_id)
        if meta.status not in RESTORABLE:
            raise Conflict(f"backup {backup_id} is {meta.status.value}: nothing to verify")
        repo.check_format()
        with reading(repo, "verify"):
            result = verify_backup(repo, meta, quick=quick, ctx=ctx)
        self._record_verify(repo, result)
        return result

    async def verify_all(
        self, project_id: str, *, quick: bool = False, progress: Progress | None = None
    ) -> list[VerifyResult]:
        """Every completed backup verified, oldest first, each chunk they share read once."""
        ctx = self._context("verify", project_id, None, progress)
        try:
            return await self._in_thread(
                lambda: self.verify_all_blocking(project_id, quick, ctx), ctx
            )
        except Cancelled:
            raise asyncio.CancelledError() from None

    def verify_all_blocking(
        self, project_id: str, quick: bool, ctx: OperationContext
    ) -> list[VerifyResult]:
        repo = self._repo(project_id)
        metas = [m for m in self.list_blocking(project_id) if m.status == BackupStatus.COMPLETED]
        metas.reverse()
        if not metas:
            return []
        repo.check_format()
        with reading(repo, "verify"):
            results = verify_backups(repo, metas, quick=quick, ctx=ctx)
        for result in results:
            self._record_verify(repo, result)
        return results

    def _record_verify(self, repo: Repository, result: VerifyResult) -> None:
        """Keep a verify's outcome beside its backup and say it in the project's log."""
        with contextlib.suppress(OSError):
            repo.write_verify(result)
        quick = "quick " if result.quick else ""
        if result.ok:
            self._log(
                result.project_id,
                "INFO",
                "verify",
                f"{quick}verify ok: {result.files_checked} files, {result.chunks_checked} chunks",
                result.backup_id,
            )
            return
        names = ", ".join(display.name(d.path) for d in result.damaged_files[:5])
        self._log(
            result.project_id,
            "ERROR",
            "verify",
            f"verify found damage: {len(result.damaged_files)} files ({names})"
            + (f"; {'; '.join(result.errors[:3])}" if result.errors else ""),
            result.backup_id,
        )

    async def recover(self, project_id: str) -> int:
        """What every writing command does first, on its own: repair what dead processes left
        (under the exclusive lock; nothing when the project is busy). Returns how many
        backups were touched."""

        def work() -> int:
            repo = self._repo(project_id)
            repo.check_format()
            return recover(
                repo,
                lambda lvl, msg, bid: self._log(project_id, lvl, "recover", msg, bid),
                self._clock,
            )

        return await self._in_thread(work)

    # --- whole-project check and index rebuild ---------------------------------------------

    async def check(
        self, project_id: str, *, read_data: bool = False, progress: Progress | None = None
    ) -> CheckResult:
        """The index against the packs, then every backup verified (chunks read with
        `read_data`, else presence only)."""
        ctx = self._context("check", project_id, None, progress)

        def work() -> CheckResult:
            repo = self._repo(project_id)
            with reading(repo, "check"):
                result = check_repository(repo, read_data=read_data, ctx=ctx)
            level = "INFO" if result.ok else "ERROR"
            self._log(
                project_id,
                level,
                "check",
                "check ok" if result.ok else "check found: " + "; ".join(result.errors[:5]),
            )
            return result

        return await self._in_thread(work, ctx)

    async def rebuild_index(self, project_id: str) -> RebuildResult:
        ctx = self._context("check", project_id, None, None)

        def work() -> RebuildResult:
            repo = self._repo(project_id)
            with locked(repo, "rebuild-index", exclusive=True):
                self._writable(repo, locked=True)
                result = rebuild_index(repo, ctx)
            self._log(
                project_id,
                "WARNING" if result.damaged_packs else "INFO",
                "rebuild",
                f"index rebuilt from {result.packs_read} packs: {result.chunks_indexed} chunks"
                + (f"; damaged packs: {len(result.damaged_packs)}" if result.damaged_packs else ""),
            )
            return result

        return await self._in_thread(work, ctx)

    # --- browse ----------------------------------------------------------------------------

    async def browse(self, project_id: str, backup_id: str, path: str = "") -> list[TreeEntry]:
        return await self._in_thread(lambda: self.browse_blocking(project_id, backup_id, path))

    def browse_blocking(self, project_id: str, backup_id: str, path: str = "") -> list[TreeEntry]:
        repo = self._repo(project_id)
        backup_id = self._resolve_id(repo, backup_id)
        key = (project_id, backup_id)
        entries = self._manifests.get(key)
        if entries is not None and not repo.store.exists(repo.prefix(backup_id) + "metadata.json"):
            # deleted by another process since it was read: never browsed from memory
            self._manifests.pop(key, None)
            entries = None
        if entries is None:
            meta = repo.read_metadata(backup_id)
            if meta.status not in RESTORABLE:
                raise Conflict(f"backup {backup_id} is {meta.status.value}: nothing to browse")
            entries = list(mf.iter_entries(repo.read_manifest(backup_id)))
            self._manifests[key] = entries
            while len(self._manifests) > 4:
                self._manifests.popitem(last=False)
        self._manifests.move_to_end(key)
        return browse.children(entries, path, backup_id)

    # --- what the faces look at: project ids, change tokens, writability ------------------

    @property
    def repository_url(self) -> str:
        """Where the projects' repositories live (the root's `backups/`, or a store URL)."""
        return self.store.url

    def project_exists_blocking(self, project_id: str) -> bool:
        return projects.project_exists(self.store, project_id)

    async def project_exists(self, project_id: str) -> bool:
        return await self._in_thread(lambda: self.project_exists_blocking(project_id))

    def project_ids_blocking(self) -> list[str]:
        return projects.project_ids(self.store)

    async def project_ids(self) -> list[str]:
        return await self._in_thread(self.project_ids_blocking)

    def change_tokens_blocking(self) -> dict[str, str]:
        return projects.change_tokens(self.store)

    async def change_tokens(self) -> dict[str, str]:
        return await self._in_thread(self.change_tokens_blocking)

    def read_only_reason(self) -> str | None:
        """Why the repository cannot be written (a read-only mount, or a directory this user
        may not write), or None when it can. Asked where backups are written."""
        return self.store.sub(projects.PROJECTS).read_only_reason()

    def read_only(self) -> bool:
        """Whether the repository root cannot be written."""
        return self.read_only_reason() is not None

    def has_projects(self) -> bool:
        """Whether the root holds any project (the demo builds only into an empty one)."""
        return projects.has_projects(self.store)
