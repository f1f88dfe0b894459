"""`projects`: the projects in the repository, with their last backup and stored size."""

from __future__ import annotations

from cli.context import EXIT_OK, Context, run
from cli.render import PROG, ago, clean, out, size, table
from core.models import ProjectSummary


def cmd_projects(ctx: Context) -> int:
    projects: list[ProjectSummary] = run(ctx.manager.projects())
    if ctx.json:
        ctx.emit(projects)
        return EXIT_OK
    if not projects:
        out(f"No projects in {clean(ctx.root)} yet (create one with: {PROG} create PROJECT DIR).")
        return EXIT_OK
    rows = [
        [p.project_id, "-", "-", "locked (encrypted: no password opens it)", "-", "-"]
        if p.locked
        else [
            p.project_id,
            str(p.backups),
            ago(p.last_backup_at),
            p.last_status.value if p.last_status else "-",
            size(p.stored_bytes),
            p.data_dir or "-",
        ]
        for p in projects
    ]
    headers = ["PROJECT", "BACKUPS", "LAST BACKUP", "STATUS", "STORED", "DATA DIR"]
    out("\n".join(table(headers, rows, right={1, 4})))
    return EXIT_OK
