"""Prometheus metrics (issue 15): a registry whose collector computes everything at scrape
time from `core.stats` (metadata, the pack listing, the newest verify record: no pack is
read), the operations this process ran, and the requests of an instrumented store.

Names follow Prometheus' conventions: a `nexus_` prefix, base units (seconds, bytes), `_total`
for counters and `_timestamp_seconds` for times; the labels are the project and, where a
metric is counted by them, a kind, a result or a status: never a backup id or a path, so the
number of series stays that of the projects.

`serve` exposes `build_registry(manager, operations=..., requests=...)` at /metrics;
a cron-style run writes the same metrics with `write_metrics_file` for node_exporter's
textfile collector. Without in-process operation counts (one-shot runs), the operations are
derived from the metadata: each backup is a `create` of its status's result, each project's
newest verify a `verify`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from core.errors import NexusError
from core.models import BackupStatus
from core.stats import OperationCounts, ProjectStats
from core.storage.instrumented import BUCKETS as REQUEST_BUCKETS
from core.storage.instrumented import RequestStats, instrumented, request_stats

#: Backup duration buckets, in seconds (a few seconds to several hours).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)
RESULTS = {
    BackupStatus.COMPLETED: "success",
    BackupStatus.RESTORING: "success",
    BackupStatus.FAILED: "failure",
}


def instrument_store(manager: Any) -> RequestStats:
    """Count the requests of the manager's store (behind its cache, if any); call it before
    the manager opens any project (`serve` does, when it builds its app). Returns the counts."""
    manager.store = instrumented(manager.store)
    stats = request_stats(manager.store)
    assert stats is not None
    return stats


def _ts(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


class NexusCollector(Collector):
    """Everything computed when scraped, from the engine's stats of every project."""

    def __init__(
        self,
        engine: Any,
        *,
        operations: OperationCounts | None = None,
        requests: RequestStats | None = None,
        projects: Collection[str] | None = None,
    ) -> None:
        self.engine = engine
        self.operations = operations
        self.requests = requests
        self.only = set(projects) if projects is not None else None

    def project_stats(self) -> tuple[list[ProjectStats], list[str]]:
        """Each readable project's stats, and the projects that could not be opened (an
        encrypted one without its password, a damaged one)."""
        found, unopened = [], []
        for pid in self.engine.project_ids_blocking():
            if self.only is not None and pid not in self.only:
                continue
            try:
                found.append(self.engine.stats_blocking(pid))
            except (NexusError, OSError, ValueError):
                unopened.append(pid)
        return found, unopened

    def collect(self) -> Iterator[Metric]:
        stats, unopened = self.project_stats()
        yield from self._projects(stats, unopened)
        yield self._operations(stats)
        if self.requests is not None:
            yield from self._requests(self.requests)

    def _projects(self, stats: list[ProjectStats], unopened: list[str]) -> Iterator[Metric]:
        p = ["project"]
        last_ok = GaugeMetricFamily(
            "nexus_backup_last_success_timestamp_seconds",
            "When the project's newest completed backup completed.",
            labels=p,
        )
        last_status = GaugeMetricFamily(
            "nexus_backup_last_status",
            "The status of the project's newest backup (1 for it, 0 for the others).",
            labels=[*p, "status"],
        )
        last_duration = GaugeMetricFamily(
            "nexus_backup_last_duration_seconds", "How long the newest backup took.", labels=p
        )
        durations = HistogramMetricFamily(
            "nexus_backup_duration_seconds",
            "How long the project's completed backups took.",
            labels=p,
        )
        read = CounterMetricFamily(
            "nexus_backup_read_bytes", "Bytes read by the project's backups.", labels=p
        )
        stored_new = CounterMetricFamily(
            "nexus_backup_stored_new_bytes",
            "New bytes the project's backups stored in packs (after compression).",
            labels=p,
        )
        logical = GaugeMetricFamily(
            "nexus_project_logical_bytes",
            "The logical size of the project's completed backups, summed.",
            labels=p,
        )
        stored = GaugeMetricFamily(
            "nexus_project_stored_bytes", "Bytes in the project's packs.", labels=p
        )
        backups = GaugeMetricFamily(
            "nexus_backups", "The project's backups, by status.", labels=[*p, "status"]
        )
        verify_at = GaugeMetricFamily(
            "nexus_verify_last_timestamp_seconds",
            "When the project's newest verify ran.",
            labels=p,
        )
        verify_ok = GaugeMetricFamily(
            "nexus_verify_last_success",
            "Whether the project's newest verify found everything intact (1) or damage (0).",
            labels=p,
        )
        unreadable = GaugeMetricFamily(
            "nexus_project_unreadable",
            "1 for a project whose figures could not be read (encrypted and not opened, or "
            "damaged); it has no other series.",
            labels=p,
        )
        for s in stats:
            t, label = s.totals, [s.project_id]
            if (at := _ts(t.last_success_at)) is not None:
                last_ok.add_metric(label, at)
            if t.last_status is not None:
                for status in BackupStatus:
                    last_status.add_metric([*label, status.value], float(status == t.last_status))
            if t.last_duration_seconds is not None:
                last_duration.add_metric(label, t.last_duration_seconds)
            done = [r.duration_seconds for r in s.backups if RESULTS.get(r.status) == "success"]
            buckets = [(repr(b), float(sum(d <= b for d in done))) for b in DURATION_BUCKETS]
            durations.add_metric(label, [*buckets, ("+Inf", float(len(done)))], sum_value=sum(done))
            read.add_metric(label, float(t.bytes_read))
            stored_new.add_metric(label, float(t.bytes_stored_new))
            logical.add_metric(label, float(t.logical_bytes))
            stored.add_metric(label, float(t.stored_bytes))
            for status in BackupStatus:
                backups.add_metric([*label, status.value], float(t.by_status.get(status.value, 0)))
            if (at := _ts(t.last_verify_at)) is not None:
                verify_at.add_metric(label, at)
                verify_ok.add_metric(label, float(bool(t.last_verify_ok)))
        for pid in unopened:
            unreadable.add_metric([pid], 1.0)
        yield from (last_ok, last_status, last_duration, durations, read, stored_new)
        yield from (logical, stored, backups, verify_at, verify_ok, unreadable)

    def _operations(self, stats: list[ProjectStats]) -> Metric:
        ops = CounterMetricFamily(
            "nexus_operations",
            "Operations, by project, kind (create, restore, verify, delete, ...) and result.",
            labels=["project", "kind", "result"],
        )
        if self.operations is not None:
            counts = self.operations.snapshot()
        else:
            counts = _derived_operations(stats)
        for (pid, kind, result), n in sorted(counts.items()):
            if self.only is None or pid in self.only:
                ops.add_metric([pid, kind, result], float(n))
        return ops

    def _requests(self, requests: RequestStats) -> Iterator[Metric]:
        counts, latency = requests.snapshot()
        total = CounterMetricFamily(
            "nexus_storage_requests",
            "Requests to the repository's store, by kind (get, put, head, list, delete) and "
            "result.",
            labels=["kind", "result"],
        )
        for (kind, result), n in sorted(counts.items()):
            total.add_metric([kind, result], float(n))
        hist = HistogramMetricFamily(
            "nexus_storage_request_duration_seconds",
            "How long the store's requests took, by kind.",
            labels=["kind"],
        )
        for kind, (per_bucket, seconds) in sorted(latency.items()):
            cumulative, running = [], 0
            for bound, n in zip(REQUEST_BUCKETS, per_bucket, strict=False):
                running += n
                cumulative.append((repr(bound), float(running)))
            cumulative.append(("+Inf", float(sum(per_bucket))))
            hist.add_metric([kind], cumulative, sum_value=seconds)
        yield total
        yield hist


def _derived_operations(stats: list[ProjectStats]) -> dict[tuple[str, str, str], int]:
    """A one-shot run's operations from the metadata: every backup a create of its result
    (one in progress counts as none yet), each project's newest verify a verify."""
    counts: dict[tuple[str, str, str], int] = {}
    for s in stats:
        for row in s.backups:
            result = RESULTS.get(row.status)
            if result is not None:
                key = (s.project_id, "create", result)
                counts[key] = counts.get(key, 0) + 1
        if s.totals.last_verify_ok is not None:
            result = "success" if s.totals.last_verify_ok else "damaged"
            counts[(s.project_id, "verify", result)] = 1
    return counts


def build_registry(
    engine: Any,
    *,
    operations: OperationCounts | None = None,
    requests: RequestStats | None = None,
    projects: Collection[str] | None = None,
) -> CollectorRegistry:
    """A registry of nexus-backup's metrics over `engine` (a BackupManager or an Engine),
    computed whenever it is collected. `operations`: this process's operation counts (else
    derived from the metadata); `requests`: an instrumented store's counts (see
    `instrument_store`); `projects`: only these projects (default: all)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        NexusCollector(engine, operations=operations, requests=requests, projects=projects)
    )
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (version 0.0.4), as /metrics answers it."""
    return generate_latest(registry)


def write_metrics_file(
    path: str | os.PathLike[str],
    engine: Any,
    *,
    operations: OperationCounts | None = None,
    projects: Collection[str] | None = None,
) -> None:
    """Write the metrics for node_exporter's textfile collector: to a temporary file in the
    same directory, flushed to disk, then renamed over `path`, so the collector never reads
    a half-written file. `path` should end in `.prom`. Raises NexusError (one line) when the
    directory cannot be written."""
    target = Path(path)
    data = render(build_registry(engine, operations=operations, projects=projects))
    fd, tmp = -1, ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            # node_exporter usually runs as another user; set on the descriptor, never by
            # name (in a directory others may write, the name could be swapped for a link)
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = ""
    except OSError as exc:
        raise NexusError(f"cannot write the metrics file {target}: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
