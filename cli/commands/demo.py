"""`demo`: open the TUI on a temporary repository filled with sample data (never the user's),
removed when the TUI exits."""

from __future__ import annotations

import os
from pathlib import Path

from cli.context import Context
from cli.launch import entry_point, exit_code

#: Free space a RAM-backed directory needs to hold the demo (a few MiB) with a wide margin.
RAM_ROOM = 256 * 1024 * 1024


def cmd_demo(ctx: Context) -> int:
    import tempfile

    run_tui = entry_point("tui.app", "run", "the TUI")
    # Never fill the user's repository with sample data: the demo gets a root of its own.
    with tempfile.TemporaryDirectory(prefix="nexus-backup-demo-", dir=ram_dir()) as tmp:
        return exit_code(run_tui(Path(tmp), demo=True))


def ram_dir() -> str | None:
    """Where the demo's throwaway repository goes: a RAM-backed directory with room (the
    user's runtime directory, else /dev/shm), since its backups fsync every object and on a
    disk those waits are most of the time before the first screen; None (the system's
    temporary directory) when there is none, or when TMPDIR says where temporary files go."""
    if os.environ.get("TMPDIR"):
        return None
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if not candidate or not os.path.isdir(candidate):
            continue
        if not os.access(candidate, os.W_OK | os.X_OK):
            continue
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        if st.f_bavail * st.f_frsize >= RAM_ROOM:
            return candidate
    return None
