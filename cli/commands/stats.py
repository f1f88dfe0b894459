"""`stats`: the history of a project's backups (one row per backup, oldest first) and its
totals; without a project, each project's totals and the repository's (core.stats)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.context import EXIT_ERROR, EXIT_OK, Context, run
from cli.render import block, duration, error_line, out, size, stamp, table
from core.errors import NexusError

if TYPE_CHECKING:  # the parser imports this module for its flags: not pydantic's models
    from core.models import BackupStats
    from core.stats import ProjectStats, ProjectTotals, RepositoryStats


def cmd_stats(ctx: Context) -> int:
    a = ctx.args
    if a.project is None:
        summary: RepositoryStats = run(ctx.manager.repository_stats(a.since))
        unreadable = [t for t in summary.projects if t.unreadable]
        if ctx.json:
            ctx.emit(summary)
            return EXIT_ERROR if unreadable else EXIT_OK
        out("\n".join(repository_lines(summary)))
        for t in unreadable:  # never a silent gap in the totals
            error_line(f"{t.project_id}: cannot be read ({t.unreadable}): not counted")
        return EXIT_ERROR if unreadable else EXIT_OK
    stats: ProjectStats = run(ctx.manager.stats(a.project, a.since))
    if ctx.json:
        ctx.emit(stats)
        return EXIT_OK
    out("\n".join(project_lines(stats)))
    return EXIT_OK


def phases_text(s: BackupStats) -> str:
    """`info`'s Phases: the sequential phases' wall times, then the readers' summed ones,
    then the ratios (docs/design.md §1.5)."""
    p = s.phases
    assert p is not None
    return (
        f"scan {duration(p.scan_seconds)}, read pass {duration(p.read_pass_seconds)}, "
        f"index {duration(p.index_seconds)}, manifest {duration(p.manifest_seconds)}, "
        f"validate {duration(p.validate_seconds)}\n"
        f"summed over {p.workers} readers: read {duration(p.read_seconds)}, chunk+hash "
        f"{duration(p.chunk_hash_seconds)}, compress {duration(p.compress_seconds)}, store "
        f"{duration(p.store_seconds)}\n"
        f"dedup {_ratio(s.dedup_ratio)}, compression {_ratio(s.compression_ratio)}"
    )


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _rate(value: float | None, unit: str) -> str:
    return f"{size(value)}/{unit}" if value is not None else "-"


def project_lines(stats: ProjectStats) -> list[str]:
    rows = [
        [
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            r.type.value,
            r.status.value,
            duration(r.duration_seconds),
            size(r.bytes_read),
            size(r.bytes_stored),
            str(r.files_new + r.files_changed + r.files_removed),
            _rate(r.throughput_bytes_per_second or None, "s"),
        ]
        for r in stats.backups
    ]
    headers = ["TIME (UTC)", "TYPE", "STATUS", "DURATION", "READ", "NEW", "CHANGED", "RATE"]
    lines = table(headers, rows, right={3, 4, 5, 6, 7}) if rows else ["No backups."]
    return [*lines, "", *totals_lines(stats.totals)]


def totals_lines(t: ProjectTotals) -> list[str]:
    if t.locked:
        return [f"{t.project_id}: encrypted and not opened (no password): nothing is known"]
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(t.by_status.items())) or "none"
    verify = "-"
    if t.last_verify_at is not None:
        verify = f"{stamp(t.last_verify_at)}, {'ok' if t.last_verify_ok else 'DAMAGED'}"
    return block(
        [
            ("Backups", f"{t.backups} ({statuses})"),
            ("Last backup", stamp(t.last_backup_at)),
            ("Last success", stamp(t.last_success_at)),
            ("Last verify", verify),
            ("Logical size", f"{size(t.logical_bytes)} (latest {size(t.latest_size_bytes)})"),
            ("Stored", size(t.stored_bytes)),
            (
                "Ratios",
                f"overall {_ratio(t.overall_ratio)}, dedup {_ratio(t.dedup_ratio)}, "
                f"compression {_ratio(t.compression_ratio)}",
            ),
            ("Growth", _rate(t.growth_bytes_per_day, "day")),
            (
                "Rows' sums",
                f"read {size(t.bytes_read)}, stored {size(t.bytes_stored_new)} new, "
                f"took {duration(t.duration_seconds)}",
            ),
        ]
    )


def repository_lines(summary: RepositoryStats) -> list[str]:
    rows = []
    for t in summary.projects:
        if t.locked:
            rows.append([t.project_id, "locked", "-", "-", "-", "-", "-"])
            continue
        if t.unreadable:
            rows.append([t.project_id, "cannot be read", "-", "-", "-", "-", "-"])
            continue
        rows.append(
            [
                t.project_id,
                str(t.backups),
                t.last_backup_at.strftime("%Y-%m-%d %H:%M") if t.last_backup_at else "-",
                size(t.logical_bytes),
                size(t.stored_bytes),
                _ratio(t.overall_ratio),
                _rate(t.growth_bytes_per_day, "day"),
            ]
        )
    headers = ["PROJECT", "BACKUPS", "LAST (UTC)", "LOGICAL", "STORED", "RATIO", "GROWTH"]
    lines = table(headers, rows, right={1, 3, 4, 5, 6}) if rows else ["No projects."]
    return [*lines, "", *totals_lines(summary.totals.model_copy(update={"project_id": "all"}))]


# --- --metrics-file: the textfile collector's file after a one-shot run ---------------------


def add_metrics_file(p: argparse.ArgumentParser) -> None:
    """Give a command `--metrics-file PATH`: once it has run (succeeded or failed), the
    project's metrics are written there for node_exporter's textfile collector."""
    p.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="then write the project's Prometheus metrics to PATH (atomically; for "
        "node_exporter's textfile collector, a name ending in .prom)",
    )
    inner: Callable[[Context], int] = p.get_default("func")
    p.set_defaults(func=lambda ctx: with_metrics_file(inner, ctx))


def with_metrics_file(func: Callable[[Context], int], ctx: Context) -> int:
    path = getattr(ctx.args, "metrics_file", None)
    if not path:
        return func(ctx)
    try:
        return func(ctx)
    finally:
        # derived from the metadata (a one-shot run): the failure of the command itself is
        # in it, as a failed backup; a file that cannot be written is said, never fatal
        from core.metrics import write_metrics_file  # prometheus_client: only when asked

        try:
            project = getattr(ctx.args, "project", None)  # none: every project (run-due)
            write_metrics_file(path, ctx.manager, projects=[project] if project else None)
        except NexusError as exc:
            error_line(str(exc), kind="warning")
