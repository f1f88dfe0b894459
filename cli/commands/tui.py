"""`tui` (and no command at all): open the terminal user interface (`tui.app.run`, imported
only here) on the repository."""

from __future__ import annotations

from cli.context import Context
from cli.launch import entry_point, exit_code


def cmd_tui(ctx: Context) -> int:
    run_tui = entry_point("tui.app", "run", "the TUI")
    return exit_code(run_tui(ctx.root, demo=False))
