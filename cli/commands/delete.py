"""`delete`: delete a backup and reclaim the space only it used; exit 1 when the reclaim was
refused (the backup is deleted, its data kept)."""

from __future__ import annotations

from cli.context import EXIT_ERROR, EXIT_OK, Context, run
from cli.render import error_line, out, plural, size
from core.models import DeleteResult


def cmd_delete(ctx: Context) -> int:
    a = ctx.args
    backup_id = a.backup_id
    with ctx.progress() as bar:
        res: DeleteResult = run(ctx.manager.delete(a.project, backup_id, progress=bar))
    code = EXIT_OK if res.reclaim_refused is None else EXIT_ERROR
    if ctx.json:
        ctx.emit(res)
        return code
    if res.reclaim_refused is not None:
        out(f"Deleted backup {res.backup_id} of project {res.project_id}")
        error_line(f"space not reclaimed: {res.reclaim_refused}")
        return code
    out(
        f"Deleted backup {res.backup_id} of project {res.project_id}: reclaimed "
        f"{size(res.bytes_reclaimed)} ({plural(res.packs_deleted, 'pack')} deleted, "
        f"{res.packs_rewritten} rewritten)"
    )
    if res.chunks_repaired:
        error_line(
            f"{plural(res.chunks_repaired, 'chunk')} damaged where the index served them "
            "are now served from intact copies; run verify",
            kind="warning",
        )
    return code
