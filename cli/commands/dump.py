"""`dump PROJECT BACKUP PATH`: a directory (or a file) of a backup as a tar stream on stdout,
as `restic dump`: names with any bytes, symlinks, modes and mtimes kept; every chunk checked."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from cli.context import EXIT_OK, Context, UsageError

HELP = "write a directory of a backup to stdout as a tar stream (verified)"


def register(add: Callable[..., argparse.ArgumentParser], project_arg, backup_arg) -> None:
    p = add("dump", HELP, cmd_dump)
    p.add_argument("project", metavar="PROJECT", type=project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=backup_arg, help='or "latest"')
    p.add_argument("path", metavar="PATH", nargs="?", default="", help="default: everything")


def cmd_dump(ctx: Context) -> int:
    a = ctx.args
    stream = ctx.backup_bytes_out("dump", "the tar stream")
    if os.isatty(stream.fileno()):
        raise UsageError("dump: stdout is a terminal: send the tar stream to a file or a pipe")
    ctx.manager.dump_blocking(a.project, a.backup_id, a.path, stream)
    stream.flush()
    return EXIT_OK
