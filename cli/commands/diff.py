"""`diff PROJECT A B` / `diff PROJECT A --live`: what was added, removed and changed from
backup A to backup B (or to the data directory as it is now), with what changed, and totals."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.context import EXIT_OK, Context, UsageError
from cli.render import error_line, name, out, plural, size

if TYPE_CHECKING:  # the parser imports this module: the engine only when it runs
    from core.compare import DiffChange, DiffTotals

HELP = "show what changed between two backups, or between a backup and the data directory now"


def register(add: Callable[..., argparse.ArgumentParser], project_arg, backup_arg) -> None:
    p = add("diff", HELP, cmd_diff)
    p.add_argument("project", metavar="PROJECT", type=project_arg)
    p.add_argument("a", metavar="A", type=backup_arg, help='the older backup (or "latest")')
    p.add_argument("b", metavar="B", type=backup_arg, nargs="?", help="the newer backup")
    p.add_argument(
        "--live", action="store_true", help="compare A with the data directory as it is now"
    )
    p.add_argument("--path", default="", metavar="P", help="only this path and what is below it")
    p.add_argument(
        "--verify-content",
        action="store_true",
        help="with --live: hash files of the same size to prove whether their content changed",
    )


def _sides(ctx: Context) -> tuple[str, str]:
    a = ctx.args
    if a.live and a.b is not None:
        raise UsageError("diff: give either B or --live, not both")
    if not a.live and a.b is None:
        raise UsageError("diff: give the backup B to compare A with, or --live")
    if a.verify_content and not a.live:
        raise UsageError("diff: --verify-content is for --live (two backups compare hashes)")
    from core.compare_names import LIVE

    return a.a, LIVE if a.live else a.b


def cmd_diff(ctx: Context) -> int:
    a = ctx.args
    old, new = _sides(ctx)
    mgr = ctx.manager
    if ctx.json:
        result = mgr.diff_blocking(
            a.project, old, new, path=a.path, verify_content=a.verify_content, limit=None
        )
        for w in result.warnings:
            error_line(w, kind="warning")
        ctx.emit(result)
        return EXIT_OK
    run = mgr.diff_run_blocking(a.project, old, new, path=a.path, verify_content=a.verify_content)
    for change in run.changes:
        out(line(change))
    for w in run.warnings:
        error_line(w, kind="warning")
    out(totals_line(run.totals, run.a, run.b))
    return EXIT_OK


def line(change: DiffChange) -> str:
    """`M  path/name  (content, size 5 B → 11 B)`; a directory's name ends with '/'."""
    shown = name(change.exact) + ("/" if change.kind == "dir" else "")
    from core.compare import mark, summary

    what = summary(change)
    return f"{mark(change)}  {shown}" + (f"  ({what})" if what else "")


def totals_line(t: DiffTotals, a: str, b: str) -> str:
    from core.compare_names import LIVE

    shown_b = "the data directory" if b == LIVE else b
    if not (t.added or t.removed or t.changed):
        entries = plural(t.unchanged, "entry", "entries")
        return f"No differences between {a} and {shown_b} ({entries} compared)."
    text = (
        f"{a} → {shown_b}: {t.added} added, {t.removed} removed, {t.changed} changed, "
        f"{t.unchanged} unchanged; files {t.files_added} added ({size(t.bytes_added)}), "
        f"{t.files_removed} removed ({size(t.bytes_removed)}), {t.files_changed} changed"
    )
    if t.content_unknown:
        text += (
            f"; {plural(t.content_unknown, 'file')} of the same size with a new mtime not "
            "compared by content (--verify-content hashes them)"
        )
    return text
