"""`projects`: the projects in the repository, with their last backup and stored size."""

from __future__ import annotations

from cli.context import EXIT_ERROR, EXIT_OK, Context, run
from cli.render import PROG, ago, clean, out, size, table
from core.models import ProjectSummary


def cmd_projects(ctx: Context) -> int:
    projects: list[ProjectSummary] = run(ctx.manager.projects())
    # a project that cannot be read is listed, with why, and fails the command (exit 1)
    code = EXIT_ERROR if any(p.unreadable for p in projects) else EXIT_OK
    if ctx.json:
        ctx.emit(projects)
        return code
    if not projects:
        out(f"No projects in {clean(ctx.root)} yet (create one with: {PROG} create PROJECT DIR).")
        return EXIT_OK
    rows = [
        [p.project_id, "-", "-", "locked (encrypted: no password opens it)", "-", "-"]
        if p.locked
        else [
            p.project_id,
            str(p.backups) if p.backups or not p.unreadable else "-",
            ago(p.last_backup_at),
            _status(p),
            size(p.stored_bytes) if p.backups or not p.unreadable else "-",
            p.data_dir or "-",
        ]
        for p in projects
    ]
    headers = ["PROJECT", "BACKUPS", "LAST BACKUP", "STATUS", "STORED", "DATA DIR"]
    out("\n".join(table(headers, rows, right={1, 4})))
    return code


def _status(p: ProjectSummary) -> str:
    if p.unreadable:
        why = p.unreadable.removeprefix(f"project {p.project_id!r}: ")
        return f"cannot be read: {why}"
    return p.last_status.value if p.last_status else "-"
