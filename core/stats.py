"""The history of a project's backups and its totals (issue 15): `stats`, its API, the TUI's
stats view and the Prometheus metrics all compute them here, so they say the same numbers.

Everything comes from cheap data: the backups' metadata (which `list` reads anyway), the
sizes of the packs from a listing, and the one newest verify record. No pack is ever read.

Ratios, each None when its denominator is zero or unknown:
- `overall_ratio`: the logical size of all completed backups per byte stored in packs (what
  dedup and compression save together; exact, from the pack listing);
- `compression_ratio`: the new chunks' bytes before compression per byte stored, summed over
  the backups that recorded both (those made since issue 15);
- `dedup_ratio`: `overall_ratio / compression_ratio`, the share of the saving compression does
  not explain.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field

from core.models import (
    RESTORABLE,
    BackupMetadata,
    BackupStatus,
    BackupType,
    Model,
    PhaseTimings,
    VerifyResult,
)
from core.query import utc

if TYPE_CHECKING:
    from core.repo.repository import Repository

VERIFY_NAME = "/verify.json"
DAY_SECONDS = 86_400.0
MIN_GROWTH_SPAN = 3_600.0  # seconds


class BackupRow(Model):
    """One backup of the history."""

    id: str
    created_at: datetime
    completed_at: datetime | None = None
    type: BackupType
    status: BackupStatus
    duration_seconds: float = 0.0
    size_bytes: int = 0  # logical size
    bytes_read: int = 0
    bytes_stored: int = 0  # new bytes stored in packs, after compression
    files_new: int = 0
    files_changed: int = 0
    files_removed: int = 0
    throughput_bytes_per_second: float = 0.0
    dedup_ratio: float | None = None
    compression_ratio: float | None = None
    phases: PhaseTimings | None = None


class ProjectTotals(Model):
    """A project as it stands, and over the rows of its history that were asked for."""

    project_id: str
    backups: int = 0  # every listed backup, whatever its status
    by_status: dict[str, int] = Field(default_factory=dict)
    logical_bytes: int = 0  # summed over the completed backups
    latest_size_bytes: int = 0  # the newest completed backup's logical size
    stored_bytes: int = 0  # bytes in packs
    overall_ratio: float | None = None
    compression_ratio: float | None = None
    dedup_ratio: float | None = None
    #: new bytes stored per day, between the first and the last backup of the rows
    growth_bytes_per_day: float | None = None
    last_backup_at: datetime | None = None
    last_status: BackupStatus | None = None
    last_duration_seconds: float | None = None
    last_success_at: datetime | None = None
    last_verify_at: datetime | None = None
    last_verify_ok: bool | None = None
    #: the rows' sums (the window of `since`, or everything)
    bytes_read: int = 0
    bytes_stored_new: int = 0
    duration_seconds: float = 0.0
    locked: bool = False  # encrypted and not opened: nothing else is known
    unreadable: str | None = None  # why it cannot be opened at all: nothing else is known


class ProjectStats(Model):
    """`stats PROJECT`: one row per backup, oldest first, and the totals."""

    project_id: str
    since: datetime | None = None
    backups: list[BackupRow] = Field(default_factory=list)
    totals: ProjectTotals


class RepositoryStats(Model):
    """`stats` without a project: each project's totals and their sum."""

    since: datetime | None = None
    projects: list[ProjectTotals] = Field(default_factory=list)
    totals: ProjectTotals


class OperationCounts:
    """The operations this process ran, by project, kind and result (thread-safe); the
    manager records each one as it ends (`BackupManager._in_thread`); `core.metrics`
    exposes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}

    def record(self, project_id: str, kind: str, result: str) -> None:
        with self._lock:
            key = (project_id, kind, result)
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)


def row_of(meta: BackupMetadata) -> BackupRow:
    s = meta.stats
    return BackupRow(
        id=meta.id,
        created_at=utc(meta.created_at),
        completed_at=utc(meta.completed_at) if meta.completed_at else None,
        type=meta.type,
        status=meta.status,
        duration_seconds=s.duration_seconds,
        size_bytes=meta.size_bytes,
        bytes_read=s.bytes_read,
        bytes_stored=s.bytes_stored,
        files_new=s.files_new,
        files_changed=s.files_changed,
        files_removed=s.files_removed,
        throughput_bytes_per_second=s.throughput_bytes_per_second,
        dedup_ratio=s.dedup_ratio,
        compression_ratio=s.compression_ratio,
        phases=s.phases,
    )


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def _growth(rows: list[BackupRow]) -> float | None:
    """New bytes per day from the first row to the last (the first's new bytes came before
    that span); None under two rows or under an hour between them (a rate per day drawn
    from minutes would say little)."""
    if len(rows) < 2:
        return None
    seconds = (rows[-1].created_at - rows[0].created_at).total_seconds()
    if seconds < MIN_GROWTH_SPAN:
        return None
    days = seconds / DAY_SECONDS
    return round(sum(r.bytes_stored for r in rows[1:]) / days, 1)


def project_stats(
    project_id: str,
    metas: Iterable[BackupMetadata],
    *,
    stored_bytes: int,
    last_verify: VerifyResult | None = None,
    since: datetime | None = None,
) -> ProjectStats:
    """The history and totals of one project from its listed metadata; the totals of the
    project as it stands (sizes, ratios, last backup, last verify) are over every backup,
    the rows and their sums only over those created at or after `since`."""
    metas = list(metas)
    every = sorted((row_of(m) for m in metas), key=lambda r: (r.created_at, r.id))
    since = utc(since) if since else None
    rows = [r for r in every if since is None or r.created_at >= since]
    completed = [r for r in every if r.status in RESTORABLE]
    logical = sum(r.size_bytes for r in completed)
    raw = stored = 0
    for meta in metas:
        if meta.status in RESTORABLE and meta.stats.bytes_new_raw is not None:
            raw += meta.stats.bytes_new_raw
            stored += meta.stats.bytes_stored
    overall = _ratio(logical, stored_bytes)
    compression = _ratio(raw, stored)
    last = every[-1] if every else None
    totals = ProjectTotals(
        project_id=project_id,
        backups=len(every),
        by_status=dict(Counter(r.status.value for r in every)),
        logical_bytes=logical,
        latest_size_bytes=completed[-1].size_bytes if completed else 0,
        stored_bytes=stored_bytes,
        overall_ratio=overall,
        compression_ratio=compression,
        dedup_ratio=round(overall / compression, 4) if overall and compression else None,
        growth_bytes_per_day=_growth(rows),
        last_backup_at=last.created_at if last else None,
        last_status=last.status if last else None,
        last_duration_seconds=last.duration_seconds if last else None,
        last_success_at=(completed[-1].completed_at or completed[-1].created_at)
        if completed
        else None,
        last_verify_at=utc(last_verify.checked_at) if last_verify else None,
        last_verify_ok=last_verify.ok if last_verify else None,
        bytes_read=sum(r.bytes_read for r in rows),
        bytes_stored_new=sum(r.bytes_stored for r in rows),
        duration_seconds=round(sum(r.duration_seconds for r in rows), 3),
    )
    return ProjectStats(project_id=project_id, since=since, backups=rows, totals=totals)


def repository_stats(
    projects: Iterable[ProjectTotals], since: datetime | None = None
) -> RepositoryStats:
    """Each project's totals and their sum (ratios of the sums; the last times the newest)."""
    listed = sorted(projects, key=lambda t: t.project_id)
    known = [t for t in listed if not t.locked and not t.unreadable]
    by_status: Counter[str] = Counter()
    for t in known:
        by_status.update(t.by_status)
    logical = sum(t.logical_bytes for t in known)
    stored = sum(t.stored_bytes for t in known)
    overall = _ratio(logical, stored)
    # the compression ratio of the sums, weighted by what each project stored
    weighted = [(t.compression_ratio, t.stored_bytes) for t in known if t.compression_ratio]
    weight = sum(w for _r, w in weighted)
    compression = round(sum(r * w for r, w in weighted) / weight, 4) if weight else None
    growths = [t.growth_bytes_per_day for t in known if t.growth_bytes_per_day is not None]

    def newest(attr: str) -> datetime | None:
        values = [getattr(t, attr) for t in known if getattr(t, attr) is not None]
        return max(values) if values else None

    totals = ProjectTotals(
        project_id="",
        backups=sum(t.backups for t in known),
        by_status=dict(by_status),
        logical_bytes=logical,
        latest_size_bytes=sum(t.latest_size_bytes for t in known),
        stored_bytes=stored,
        overall_ratio=overall,
        compression_ratio=compression,
        dedup_ratio=round(overall / compression, 4) if overall and compression else None,
        growth_bytes_per_day=round(sum(growths), 1) if growths else None,
        last_backup_at=newest("last_backup_at"),
        last_success_at=newest("last_success_at"),
        last_verify_at=newest("last_verify_at"),
        bytes_read=sum(t.bytes_read for t in known),
        bytes_stored_new=sum(t.bytes_stored_new for t in known),
        duration_seconds=round(sum(t.duration_seconds for t in known), 3),
    )
    return RepositoryStats(since=utc(since) if since else None, projects=listed, totals=totals)


def last_verify(repo: Repository, backup_ids: Iterable[str]) -> VerifyResult | None:
    """The newest verify record among these backups: one listing of the backups' objects
    (their sizes and times, no content) and one read, the newest record's."""
    wanted = {repo.prefix(b) + VERIFY_NAME[1:] for b in backup_ids}
    newest = None
    for info in repo.store.list("backup_"):
        if info.name in wanted and (newest is None or info.mtime > newest.mtime):
            newest = info
    if newest is None:
        return None
    return repo.read_verify(newest.name.split("/", 1)[0].removeprefix("backup_"))
