"""`rename-project`: a project under a new name, every backup with it (on a local disk)."""

from __future__ import annotations

from cli.context import EXIT_OK, Context, run
from cli.render import out, plural
from core.models import ProjectSummary


def cmd_rename_project(ctx: Context) -> int:
    a = ctx.args
    res: ProjectSummary = run(ctx.manager.rename_project(a.project, a.new_id))
    if ctx.json:
        ctx.emit(res)
        return EXIT_OK
    out(f"Renamed project {a.project} to {res.project_id} ({plural(res.backups, 'backup')})")
    return EXIT_OK
