"""`ls PROJECT BACKUP [PATH]`: the entries of a backup below PATH, without restoring it."""

from __future__ import annotations

import argparse
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.context import EXIT_OK, Context
from cli.render import name, out, size, table
from core.display import exact

if TYPE_CHECKING:  # the parser imports this module: the engine only when it runs
    from core.compare import LsEntry

HELP = "list the files of a backup (below PATH), without restoring it"
_TYPE_BITS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def register(add: Callable[..., argparse.ArgumentParser], project_arg, backup_arg) -> None:
    p = add("ls", HELP, cmd_ls)
    p.add_argument("project", metavar="PROJECT", type=project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=backup_arg, help='or "latest"')
    p.add_argument("path", metavar="PATH", nargs="?", default="", help="default: the top")
    p.add_argument("-l", dest="long", action="store_true", help="long format")
    p.add_argument("-R", "--recursive", action="store_true", help="everything below PATH")


def cmd_ls(ctx: Context) -> int:
    a = ctx.args
    result = ctx.manager.ls_blocking(a.project, a.backup_id, a.path, recursive=a.recursive)
    if ctx.json:
        ctx.emit(result)
        return EXIT_OK
    if a.long:
        rows = [long_row(e, full=a.recursive) for e in result.entries]
        if rows:
            out("\n".join(table(["MODE", "OWNER", "SIZE", "MTIME", "NAME"], rows, right={2})))
        return EXIT_OK
    for e in result.entries:
        out(name_of(e, full=a.recursive))
    return EXIT_OK


def name_of(e: LsEntry, *, full: bool) -> str:
    text = name(e.exact if full else e.exact.rpartition("/")[2])
    return text + "/" if e.kind == "dir" else text


def long_row(e: LsEntry, *, full: bool) -> list[str]:
    shown = name_of(e, full=full)
    if e.kind == "symlink":
        shown += f" -> {name(e.exact_target or '')}"
    held = size(e.size) + (f" ({e.files} files)" if e.kind == "dir" else "")
    return [
        stat.filemode(_TYPE_BITS[e.kind] | e.mode),
        f"{e.uid}:{e.gid}",
        held,
        exact(e.mtime),
        shown,
    ]
