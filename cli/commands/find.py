"""`find PROJECT PATTERN`: every backup holding a path that matches (a glob on the full path or
the base name, else a substring), newest first, with the file's size and mtime in each; runs of
backups in which it did not change are one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.context import EXIT_OK, Context, UsageError
from cli.render import clean, error_line, name, out, plural, size
from core.display import exact

if TYPE_CHECKING:  # the parser imports this module: the engine only when it runs
    from core.compare import FindHit, FindVersion

HELP = "find the backups that hold a path (glob or substring), newest first"


def register(add: Callable[..., argparse.ArgumentParser], project_arg, backup_arg) -> None:
    p = add("find", HELP, cmd_find)
    p.add_argument("project", metavar="PROJECT", type=project_arg, nargs="?")
    p.add_argument(
        "pattern",
        metavar="PATTERN",
        help="a glob (*, ?, [...]) on the full path or the name, else a substring of the path",
    )
    p.add_argument("--all-projects", action="store_true", help="search every project")
    p.add_argument(
        "--limit", type=int, default=1000, metavar="N", help="list at most N paths (default 1000)"
    )


def cmd_find(ctx: Context) -> int:
    a = ctx.args
    if a.project is None and not a.all_projects:
        raise UsageError("find: name a PROJECT, or give --all-projects")
    if a.limit < 1:
        raise UsageError("find: --limit must be at least 1")
    result = ctx.manager.find_blocking(
        a.project, a.pattern, all_projects=a.all_projects, limit=a.limit
    )
    for w in result.warnings:
        error_line(w, kind="warning")
    if ctx.json:
        ctx.emit(result)
        return EXIT_OK
    if not result.hits:
        out(f"No path matches {clean(a.pattern)!r} in {plural(result.backups_searched, 'backup')}.")
        return EXIT_OK
    for hit in result.hits:
        out("\n".join(hit_lines(hit, show_project=a.all_projects)))
    tail = " (more matched: --limit)" if result.truncated else ""
    out(f"{plural(len(result.hits), 'path')} in {plural(result.backups_searched, 'backup')}" + tail)
    return EXIT_OK


def hit_lines(hit: FindHit, *, show_project: bool = False) -> list[str]:
    head = (f"{hit.project_id}: " if show_project else "") + name(hit.exact)
    return [head] + [f"  {version_line(v)}" for v in hit.versions]


def version_line(v: FindVersion) -> str:
    where = v.newest if v.backups == 1 else f"{v.newest} .. {v.oldest} ({v.backups} backups)"
    link = f"-> {name(v.exact_target or '')}"
    what = {"file": size(v.size), "dir": "dir", "symlink": link}[v.kind]
    return f"{where}  {what}  mtime {exact(v.mtime)}"
