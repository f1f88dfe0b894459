"""`delete-project`: delete a project and all its backups. It asks for the project's name
on a terminal (naming what goes), and takes `--yes` anywhere else; the backup count shown is
the one deleted, or nothing is (a backup made meanwhile)."""

from __future__ import annotations

import sys

from cli.context import EXIT_OK, Context, UsageError, run
from cli.render import clean, name, out, plural, size
from core.models import ProjectDeleteResult, ProjectSummary


def _summary(ctx: Context, project_id: str) -> ProjectSummary | None:
    found = run(ctx.manager.projects(only=[project_id]))
    return found[0] if found else None


def _confirm(project: ProjectSummary) -> None:
    what = f"{plural(project.backups, 'backup')}, {size(project.stored_bytes)} stored"
    if project.data_dir:
        what += f", of {name(project.data_dir)}"
    if not sys.stdin.isatty():
        raise UsageError(f"refusing to delete project {project.project_id} ({what}) without --yes")
    sys.stderr.write(
        f"Delete project {project.project_id} and all its backups ({what})? This cannot be "
        f"undone.\nType the project's name to confirm: "
    )
    sys.stderr.flush()
    if sys.stdin.readline().strip() != project.project_id:
        raise UsageError(f"not confirmed: project {project.project_id} is unchanged")


def cmd_delete_project(ctx: Context) -> int:
    a = ctx.args
    project = _summary(ctx, a.project)
    count = None
    if project is not None and not project.locked:
        count = project.backups
        if not a.yes:
            _confirm(project)
    elif not a.yes:  # locked, or a delete cut short: nothing to count, so --yes
        raise UsageError(f"refusing to delete project {a.project} without --yes")
    res: ProjectDeleteResult = run(ctx.manager.delete_project(a.project, backups=count))
    if ctx.json:
        ctx.emit(res)
        return EXIT_OK
    finished = " (finishing an earlier delete)" if res.resumed else ""
    out(
        f"Deleted project {res.project_id}{finished}: {res.backups_text()}, "
        f"{size(res.bytes_deleted)} freed; its logs are kept"
    )
    if res.kept:
        shown = ", ".join(clean(n) for n in res.kept[:3]) + (", …" if len(res.kept) > 3 else "")
        out(f"Left {plural(len(res.kept), 'file')} that nexus-backup did not write: {shown}")
    return EXIT_OK
