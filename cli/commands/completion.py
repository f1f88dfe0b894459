"""`completion SHELL`: print the completion script of bash, zsh or fish (cli.completion makes
it from the parser, so it never drifts from the commands)."""

from __future__ import annotations

from cli.completion import INSTALL_HELP, SHELLS, script
from cli.context import EXIT_OK, Context
from cli.render import out

__all__ = ["INSTALL_HELP", "SHELLS", "cmd_completion"]


def cmd_completion(ctx: Context) -> int:
    from cli.parser import build_parser  # the parser imports this module

    out(script(ctx.args.shell, build_parser()).rstrip("\n"))
    return EXIT_OK
