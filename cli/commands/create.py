"""`create`: back up a directory into a project (by default the directory the project backs
up); exit 3 when files were skipped or changed while read."""

from __future__ import annotations

import os

from cli.context import EXIT_OK, EXIT_SKIPPED, Context, UsageError, run
from cli.render import block, clean, duration, error_line, out, plural, size
from core.errors import NotFound
from core.models import BackupMetadata, BackupType, CopyResult, CreateRequest
from core.retention import ForgetResult


def _remembered_dir(ctx: Context, project: str) -> str:
    """The directory the project backs up (its settings' `data_dir`), for `create PROJECT`."""
    try:
        remembered = run(ctx.manager.settings(project)).get("data_dir")
    except NotFound:
        raise UsageError(
            f"create: project {project!r} does not exist yet: give DATA_DIR to create it"
        ) from None
    if not isinstance(remembered, str) or not remembered:
        raise UsageError(f"create: project {project!r} has no directory yet: give DATA_DIR")
    return remembered


def cmd_create(ctx: Context) -> int:
    a = ctx.args
    data_dir = a.data_dir or _remembered_dir(ctx, a.project)
    req = CreateRequest(
        project_id=a.project,
        backup_type=BackupType(a.backup_type),
        data_dir=os.path.abspath(data_dir),
        data_dir_change=a.data_dir_change,
        tags=dict(a.tag),
        extra=dict(a.extra),
        excludes=a.exclude,
        parent_backup_id=a.parent,
        name=a.name,
        host=a.host,
        created_at=a.created_at,
    )
    mgr = ctx.manager
    with ctx.progress() as bar:
        meta: BackupMetadata = run(mgr.create(req, progress=bar))
    copied = mgr.copy_outcome(meta.project_id, meta.id)
    kept = mgr.retention_outcome(meta.project_id, meta.id)
    warned = meta.stats.warnings or isinstance(copied, str) or isinstance(kept, str)
    code = EXIT_SKIPPED if warned else EXIT_OK
    if isinstance(copied, str):
        error_line(copied, kind="warning")
    for warning in copied.warnings if isinstance(copied, CopyResult) else ():
        error_line(warning, kind="warning")
    if isinstance(kept, str):
        error_line(kept, kind="warning")
    if ctx.json:
        ctx.emit(meta)
        return code
    s = meta.stats
    title = f"Created {meta.type.value} backup {meta.id} of project {meta.project_id}"
    if meta.name:
        title += f" (checkpoint {clean(meta.name)!r})"
    lines = [title]
    details = [
        ("Files", f"{meta.files_count} ({size(meta.size_bytes)}) from {clean(req.data_dir)}"),
        (
            "Changes",
            f"{s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged, "
            f"{s.files_removed} removed",
        ),
        (
            "Stored",
            f"{size(s.bytes_stored)} new (read {size(s.bytes_read)}; "
            f"{plural(s.chunks_new, 'new chunk')}, {s.chunks_reused} reused)",
        ),
        (
            "Took",
            f"{duration(s.duration_seconds)} ({size(s.throughput_bytes_per_second)}/s)",
        ),
    ]
    if meta.parent_backup_id:
        details.append(("Parent", meta.parent_backup_id))
    if meta.checksum:
        details.append(("Checksum", meta.checksum))
    if isinstance(copied, CopyResult):
        details.append(("Copied to", f"{clean(copied.target)} ({size(copied.bytes_sent)} sent)"))
    if isinstance(kept, ForgetResult):
        details.append(("Retention", kept.summary()))
    lines += ["  " + line for line in block(details)]
    if s.warnings:
        lines.append(f"Warning: {plural(len(s.warnings), 'file')} skipped or changed while read:")
        lines += [f"  {clean(w)}" for w in s.warnings]
    out("\n".join(lines))
    return code
