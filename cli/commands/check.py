"""`check`: check a whole project (index, packs and every backup; `--read-data` re-reads and
hashes every chunk); exit 4 when damage is found."""

from __future__ import annotations

from cli.commands.verify import verify_lines
from cli.context import EXIT_DAMAGED, EXIT_OK, Context, run
from cli.render import clean, duration, out, plural
from core.models import CheckResult


def cmd_check(ctx: Context) -> int:
    a = ctx.args
    with ctx.progress() as bar:
        res: CheckResult = run(ctx.manager.check(a.project, read_data=a.read_data, progress=bar))
    code = EXIT_OK if res.ok else EXIT_DAMAGED
    if ctx.json:
        ctx.emit(res)
        return code
    kind = "chunks re-read and hashed" if res.read_data else "chunks present"
    lines = [
        f"Project {res.project_id}: {'OK' if res.ok else 'DAMAGED'} "
        f"({plural(res.packs_checked, 'pack')}, {plural(len(res.backups), 'backup')}; {kind}; "
        f"{duration(res.duration_seconds)})"
    ]
    lines += [f"  error: {clean(e)}" for e in res.errors]
    lines += [f"  warning: {clean(w)}" for w in res.warnings]
    for r in res.backups:
        if not r.ok:
            lines += verify_lines(r)
    out("\n".join(lines))
    return code
