"""The seam the faces use: `Engine`, exactly the part of `BackupManager` that the CLI, the TUI
and the API call (async for an event loop, `*_blocking` for a worker thread or a pool).

The faces hold their manager as an `Engine`, so a type checker tells them when they reach for
something else, and a test (tests/test_service.py) holds `BackupManager` to it: every member
here exists on the manager with the same parameters. A method a face starts to call is added
here first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from core.compare_names import DIFF_LIMIT, FIND_LIMIT
from core.logger import BackupLogger
from core.manage.runs import ScheduleState
from core.models import (
    BackupInfo,
    BackupMetadata,
    CheckResult,
    CopyResult,
    CreateRequest,
    DeleteResult,
    LastRun,
    ListFilter,
    ProgressEvent,
    ProjectDeleteResult,
    ProjectSummary,
    RebuildResult,
    RestoreRequest,
    RestoreResult,
    TreeEntry,
    VerifyResult,
)
from core.retention import ForgetResult, Policy
from core.stats import OperationCounts, ProjectStats, RepositoryStats

if TYPE_CHECKING:  # annotations only: diff's models are built by the operations that use them
    from core.compare import DiffResult, DiffRun, FindResult, LsEntry, LsResult

Progress = Callable[[ProgressEvent], None]


class Engine(Protocol):
    """What a face may ask of the engine (see the module docstring)."""

    root: Path
    logger: BackupLogger
    #: the operations this process ran (issue 15's metrics)
    operations: OperationCounts

    @property
    def repository_url(self) -> str: ...

    # --- keys of an encrypted project (blocking: a key derivation, a few small objects) ---

    def key_list(self, project_id: str) -> list[dict]: ...

    def key_add(self, project_id: str, new_password: str) -> str: ...

    def key_remove(self, project_id: str, key_id: str) -> None: ...

    def key_passwd(self, project_id: str, new_password: str) -> str: ...

    def unlock_blocking(self, project_id: str, password: str) -> None: ...

    # --- operations (async: they run in the manager's worker threads) ---------------------

    async def create(
        self,
        req: CreateRequest,
        *,
        progress: Progress | None = None,
        on_created: Callable[[BackupMetadata], None] | None = None,
        make_project: bool = True,
    ) -> BackupMetadata: ...

    async def restore(
        self, req: RestoreRequest, *, progress: Progress | None = None
    ) -> RestoreResult: ...

    async def verify(
        self,
        project_id: str,
        backup_id: str,
        *,
        quick: bool = False,
        progress: Progress | None = None,
    ) -> VerifyResult: ...

    async def verify_all(
        self, project_id: str, *, quick: bool = False, progress: Progress | None = None
    ) -> list[VerifyResult]: ...

    async def delete(
        self, project_id: str, backup_id: str, *, progress: Progress | None = None
    ) -> DeleteResult: ...

    async def delete_project(
        self, project_id: str, *, backups: int | None = None
    ) -> ProjectDeleteResult: ...

    async def rename_project(self, project_id: str, new_id: str) -> ProjectSummary: ...

    async def check(
        self, project_id: str, *, read_data: bool = False, progress: Progress | None = None
    ) -> CheckResult: ...

    async def rebuild_index(self, project_id: str) -> RebuildResult: ...

    async def settings(self, project_id: str) -> dict[str, object]: ...

    async def set_copy_to(self, project_id: str, to: str | None) -> None: ...

    async def copy(
        self,
        project_id: str,
        to: str,
        backup_ids: Collection[str] | None = None,
        *,
        progress: Progress | None = None,
    ) -> CopyResult: ...

    async def create_project(
        self, project_id: str, data_dir: str | None = None, *, password: str | None = None
    ) -> ProjectSummary: ...

    # --- reads -----------------------------------------------------------------------------

    async def list(
        self, project_id: str, filters: ListFilter | None = None
    ) -> list[BackupMetadata]: ...

    async def info(self, project_id: str, backup_id: str) -> BackupInfo: ...

    async def browse(self, project_id: str, backup_id: str, path: str = "") -> list[TreeEntry]: ...

    async def projects(self, only: Collection[str] | None = None) -> list[ProjectSummary]: ...

    async def project_ids(self) -> list[str]: ...

    def project_ids_blocking(self) -> list[str]: ...

    async def damaged_metadata(self, project_id: str) -> list[str]: ...
    async def config_problem(self, project_id: str) -> str | None: ...

    # --- the same reads, blocking (for a thread pool of the face's own) --------------------

    def list_blocking(
        self, project_id: str, filters: ListFilter | None = None
    ) -> list[BackupMetadata]: ...

    def info_blocking(self, project_id: str, backup_id: str) -> BackupInfo: ...

    def projects_blocking(self, only: Collection[str] | None = None) -> list[ProjectSummary]: ...

    def project_exists_blocking(self, project_id: str) -> bool: ...

    def change_tokens_blocking(self) -> dict[str, str]: ...

    def progress_of(self, project_id: str, backup_id: str) -> ProgressEvent | None: ...

    def read_only_reason(self) -> str | None: ...

    def copy_outcome(self, project_id: str, backup_id: str) -> CopyResult | str | None: ...

    def has_projects(self) -> bool: ...

    # --- retention (issue 13) ---------------------------------------------------------------

    async def policy(self, project_id: str) -> Policy | None: ...

    async def set_policy(
        self, project_id: str, policy: Policy | None, *, merge: dict | None = None
    ) -> Policy | None: ...

    async def forget(
        self,
        project_id: str,
        policy: Policy | None = None,
        *,
        dry_run: bool = False,
        max_unused: float = 0.05,
        progress: Progress | None = None,
        removing: Collection[str] | None = None,
    ) -> ForgetResult: ...

    async def protect(self, project_id: str, backup_id: str) -> BackupMetadata: ...

    async def unprotect(self, project_id: str, backup_id: str) -> BackupMetadata: ...

    async def undelete(self, project_id: str, backup_id: str) -> BackupMetadata: ...

    async def removed(self, project_id: str) -> list[BackupMetadata]: ...

    def policy_blocking(self, project_id: str) -> Policy | None: ...

    def set_policy_blocking(
        self, project_id: str, policy: Policy | None, *, merge: dict | None = None
    ) -> Policy | None: ...

    def forget_blocking(
        self,
        project_id: str,
        policy: Policy | None = None,
        *,
        dry_run: bool = False,
        max_unused: float = 0.05,
    ) -> ForgetResult: ...

    def protect_blocking(self, project_id: str, backup_id: str) -> BackupMetadata: ...

    def unprotect_blocking(self, project_id: str, backup_id: str) -> BackupMetadata: ...

    def undelete_blocking(self, project_id: str, backup_id: str) -> BackupMetadata: ...

    def removed_blocking(self, project_id: str) -> list[BackupMetadata]: ...

    def retention_outcome(self, project_id: str, backup_id: str) -> ForgetResult | str | None: ...

    # --- scheduled runs (issue 14; core/scheduler.py runs them through these) -------------

    def schedule_state_blocking(self, project_id: str, now: datetime) -> ScheduleState: ...

    def run_lock(self, project_id: str) -> contextlib.AbstractContextManager: ...

    def record_run_blocking(self, project_id: str, run: LastRun) -> None: ...

    # --- stats: history and totals (issue 15) -----------------------------------------------

    async def stats(self, project_id: str, since: datetime | None = None) -> ProjectStats: ...

    def stats_blocking(self, project_id: str, since: datetime | None = None) -> ProjectStats: ...

    async def repository_stats(self, since: datetime | None = None) -> RepositoryStats: ...

    def repository_stats_blocking(self, since: datetime | None = None) -> RepositoryStats: ...

    # --- compare and search backups (issue 17: core.manage.compare) -------------------------

    async def diff(
        self,
        project_id: str,
        a: str,
        b: str,
        *,
        path: str = "",
        verify_content: bool = False,
        limit: int | None = DIFF_LIMIT,
    ) -> DiffResult: ...

    def diff_blocking(
        self,
        project_id: str,
        a: str,
        b: str,
        *,
        path: str = "",
        verify_content: bool = False,
        limit: int | None = DIFF_LIMIT,
    ) -> DiffResult: ...

    def diff_run_blocking(
        self,
        project_id: str,
        a: str,
        b: str,
        *,
        path: str = "",
        verify_content: bool = False,
    ) -> DiffRun: ...

    async def find(
        self,
        project_id: str | None,
        pattern: str,
        *,
        all_projects: bool = False,
        limit: int = FIND_LIMIT,
    ) -> FindResult: ...

    def find_blocking(
        self,
        project_id: str | None,
        pattern: str,
        *,
        all_projects: bool = False,
        limit: int = FIND_LIMIT,
    ) -> FindResult: ...

    async def ls(
        self,
        project_id: str,
        backup_id: str,
        path: str = "",
        *,
        recursive: bool = False,
        limit: int | None = None,
    ) -> LsResult: ...

    def ls_blocking(
        self,
        project_id: str,
        backup_id: str,
        path: str = "",
        *,
        recursive: bool = False,
        limit: int | None = None,
    ) -> LsResult: ...

    async def open_file(
        self, project_id: str, backup_id: str, path: str
    ) -> tuple[LsEntry, Iterator[bytes]]: ...

    def open_file_blocking(
        self, project_id: str, backup_id: str, path: str
    ) -> tuple[LsEntry, Iterator[bytes]]: ...

    def dump_blocking(self, project_id: str, backup_id: str, path: str, out: BinaryIO) -> int: ...

    def refuse_output_inside(self, fd: int, what: str) -> None:
        """Raises before a backup's bytes go to `fd` when it is a file inside a repository
        or the logs (dump's and cat's stdout, design I3)."""
