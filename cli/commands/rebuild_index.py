"""`rebuild-index`: rebuild a project's index from its packs alone (damaged objects are moved
to quarantine, never deleted); exit 4 when packs were damaged."""

from __future__ import annotations

from cli.context import EXIT_DAMAGED, EXIT_OK, Context, run
from cli.render import clean, out, plural
from core.models import RebuildResult


def cmd_rebuild_index(ctx: Context) -> int:
    res: RebuildResult = run(ctx.manager.rebuild_index(ctx.args.project))
    if ctx.json:
        ctx.emit(res)
        return EXIT_DAMAGED if res.damaged_packs else EXIT_OK
    out(
        f"Index of {res.project_id} rebuilt from {plural(res.packs_read, 'pack')}: "
        f"{plural(res.chunks_indexed, 'chunk')} indexed"
    )
    for note in res.notes:
        out(f"  {clean(note)}")
    if res.quarantined:
        out(
            f"  {plural(len(res.quarantined), 'damaged object')} moved to quarantine/ (kept, "
            "not deleted): run check"
        )
    return EXIT_DAMAGED if res.damaged_packs else EXIT_OK
