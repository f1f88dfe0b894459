"""`demo`: open the TUI on a temporary repository filled with sample data (never the user's),
removed when the TUI exits."""

from __future__ import annotations

from pathlib import Path

from cli.context import Context
from cli.launch import entry_point, exit_code


def cmd_demo(ctx: Context) -> int:
    import tempfile

    run_tui = entry_point("tui.app", "run", "the TUI")
    # Never fill the user's repository with sample data: the demo gets a root of its own.
    with tempfile.TemporaryDirectory(prefix="nexus-backup-demo-") as tmp:
        return exit_code(run_tui(Path(tmp), demo=True))
