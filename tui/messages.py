"""Typed messages between workers and widgets.

Workers never touch widgets: they await the core and post one of these; the handler (on the
event loop, in the DOM) updates the screen. High-rate messages coalesce through `can_replace`,
so a burst of progress or log lines never queues up behind the user's keystrokes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from core.logger import LogRecord
from core.models import (
    BackupInfo,
    BackupMetadata,
    ProgressEvent,
    ProjectSummary,
    RestoreResult,
    TreeEntry,
)

if TYPE_CHECKING:  # annotations only: the models are built by the comparing screens' workers
    from core.compare import DiffResult, FindResult


@dataclass
class ProjectsLoaded(Message):
    projects: list[ProjectSummary]
    partial: bool = False  # names only, from a directory listing; the figures follow


@dataclass
class BackupsLoaded(Message):
    project_id: str
    backups: list[BackupMetadata]


@dataclass
class ProjectLocked(Message):
    """The project is encrypted and no password of this session opens it; `ask`: it was
    just opened (selected), so its password is asked for."""

    project_id: str
    ask: bool = False


@dataclass
class BackupInfoLoaded(Message):
    project_id: str
    info: BackupInfo


@dataclass
class RepositoryChanged(Message):
    """Metadata on disk changed (maybe by another process): reload what is shown."""

    project_ids: frozenset[str]

    def can_replace(self, message: Message) -> bool:
        """One pending change replaces another, carrying the projects of both."""
        if not isinstance(message, RepositoryChanged):
            return False
        self.project_ids = self.project_ids | message.project_ids
        return True


@dataclass
class OperationProgress(Message):
    op_id: str
    event: ProgressEvent

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OperationProgress) and message.op_id == self.op_id


@dataclass
class OperationCreated(Message):
    """A create's PENDING metadata exists: show the new row at once."""

    op_id: str
    metadata: BackupMetadata


@dataclass
class OperationFinished(Message):
    op_id: str
    result: Any


@dataclass
class OperationsChanged(Message):
    """An operation started, progressed, ended: the progress panel re-renders."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OperationsChanged)


@dataclass
class LogRecordsRead(Message):
    """New lines of the followed log file; `reset` when the file (project or day) changed."""

    path: str
    records: list[LogRecord]
    reset: bool = False


@dataclass
class TreeChildrenLoaded(Message):
    node_id: int
    entries: list[TreeEntry]


@dataclass
class RestorePreviewReady(Message):
    result: RestoreResult


@dataclass
class FilterChanged(Message):
    """The filter bar's text changed (as you type) or was cleared."""

    text: str


@dataclass
class StatsLoaded(Message):
    """A project's history and totals (core.stats), for the stats view (issue 15)."""

    project_id: str
    stats: Any  # core.stats.ProjectStats


# --- comparing and searching backups (issue 17: tui/screens/diff.py, find.py) --------------


@dataclass
class DiffLoaded(Message):
    result: DiffResult


@dataclass
class FindLoaded(Message):
    result: FindResult
