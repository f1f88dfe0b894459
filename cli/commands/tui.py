"""`tui` (and no command at all): open the terminal user interface (`tui.app.run`, imported
only here) on the repository."""

from __future__ import annotations

from cli.context import Context
from cli.launch import entry_point, exit_code
from core.config import check_directory


def cmd_tui(ctx: Context) -> int:
    check_directory(ctx.root)  # the TUI opens its manager late, inside the app: check first
    run_tui = entry_point("tui.app", "run", "the TUI")
    return exit_code(run_tui(ctx.root, demo=False))
