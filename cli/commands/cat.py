"""`cat PROJECT BACKUP PATH`: a file's bytes from a backup to stdout, every chunk checked
against its hash as it is read (as a restore reads it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cli.context import EXIT_OK, Context

HELP = "write a file of a backup to stdout (verified), without restoring it"


def register(add: Callable[..., argparse.ArgumentParser], project_arg, backup_arg) -> None:
    p = add("cat", HELP, cmd_cat)
    p.add_argument("project", metavar="PROJECT", type=project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=backup_arg, help='or "latest"')
    p.add_argument("path", metavar="PATH", help="the file, as `ls` shows it")


def cmd_cat(ctx: Context) -> int:
    a = ctx.args
    stream = ctx.backup_bytes_out("cat", "the file")
    _entry, pieces = ctx.manager.open_file_blocking(a.project, a.backup_id, a.path)
    for piece in pieces:
        stream.write(piece)
    stream.flush()
    return EXIT_OK
