"""`list`: the backups of a project, newest first, filtered by type, status, tag, time or
text."""

from __future__ import annotations

from cli.context import EXIT_ERROR, EXIT_OK, Context, run
from cli.render import (
    ago,
    config_damage,
    error_line,
    first_ids,
    fmt_tags,
    out,
    plural,
    size,
    table,
)
from core.models import BackupMetadata, BackupStatus, BackupType, ListFilter


def cmd_list(ctx: Context) -> int:
    a = ctx.args
    filters = ListFilter(
        type=BackupType(a.backup_type) if a.backup_type else None,
        status=BackupStatus(a.status) if a.status else None,
        tag=a.tag,
        since=a.since,
        until=a.until,
        text=a.search,
        host=a.host,
    )
    backups: list[BackupMetadata] = run(ctx.manager.list(a.project, filters))
    unreadable = run(ctx.manager.damaged_metadata(a.project))
    problem = run(ctx.manager.config_problem(a.project))
    said = []  # one line, whatever is wrong
    if unreadable:  # never a silent "no backups": a lost key or a damaged file is said
        shown = first_ids(unreadable)
        said.append(
            f"{plural(len(unreadable), 'backup')} of {a.project} not listed: metadata.json "
            f"cannot be read ({shown}); `nexus-backup check {a.project}` says why"
        )
    if problem:  # its backups list, but none restores: never shown as if healthy
        said.append(config_damage(problem))
    if said:
        error_line("; and ".join(said), kind="error" if problem else "warning")
    code = EXIT_ERROR if problem else EXIT_OK
    if ctx.json:
        ctx.emit(backups)
        return code
    if not backups:
        filtered = any(v is not None for v in filters.model_dump().values())
        out(f"No backups in project {a.project}" + (" match the filters." if filtered else "."))
        return code
    rows = []
    for m in backups:
        status = m.status.value
        if m.status == BackupStatus.FAILED and m.error_message:
            status += f" ({m.error_message})"
            if len(status) > 40:
                status = status[:39] + "…"
        rows.append(
            [
                m.id,
                m.type.value,
                ago(m.created_at),
                size(m.size_bytes),
                str(m.files_count),
                m.parent_backup_id or "-",
                fmt_tags(m.tags),
                status,
            ]
        )
    headers = ["ID", "TYPE", "CREATED", "SIZE", "FILES", "PARENT", "TAGS", "STATUS"]
    out("\n".join(table(headers, rows, right={3, 4})))
    return code
