"""The main screen's keys for comparing and searching backups (issue 17), mixed into
`MainScreen`: `m` marks the highlighted backup, `D` shows the diff from the marked backup to
the highlighted one (or from the highlighted one to the data directory now, when none is
marked), `f` finds a path in every backup and jumps to the one chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding

from core.models import BackupMetadata

if TYPE_CHECKING:
    from tui.app import NexusApp

#: Out of the footer (which keeps its room at 80 columns); listed by `?` and the palette.
COMPARE_BINDINGS = [
    Binding("m", "mark", "Mark", show=False, id="mark", tooltip="Mark a backup to diff"),
    Binding("D", "diff", "Diff", show=False, id="diff", tooltip="Diff marked and selected"),
    Binding("f", "find", "Find", show=False, id="find", tooltip="Find a path in every backup"),
]


class CompareActions:
    """Needs the main screen's `app`, `current_backup`, `project_id`, `table` and
    `detail_source`."""

    app: NexusApp
    #: The backup marked with `m` (the older side of the next diff).
    diff_mark: BackupMetadata | None = None

    def _restorable(self, what: str) -> BackupMetadata | None:
        backup = self.current_backup  # type: ignore[attr-defined]
        if backup is None:
            self.app.notify("Select a backup first.", severity="warning")
            return None
        if not backup.restorable:
            self.app.notify(
                f"{backup.id} {backup.status.value}: only a completed backup can be {what}.",
                severity="warning",
            )
            return None
        return backup

    def action_mark(self) -> None:
        backup = self._restorable("compared")
        if backup is None:
            return
        if self.diff_mark is not None and self.diff_mark.id == backup.id:
            self.diff_mark = None
            self.app.notify(f"Unmarked {backup.id}.")
            return
        self.diff_mark = backup
        self.app.notify(f"Marked {backup.id}: select another backup and press D to diff.")

    def action_diff(self) -> None:
        from tui.screens.diff import DiffScreen

        backup = self._restorable("compared")
        if backup is None:
            return
        marked = self.diff_mark
        if marked is not None and marked.project_id != backup.project_id:
            marked = self.diff_mark = None
        if marked is None or marked.id == backup.id:
            old, new = backup, None  # against the data directory now
        else:
            old, new = sorted((marked, backup), key=lambda b: (b.created_at, b.id))
        source = self.detail_source(old)  # type: ignore[attr-defined]
        self.app.push_screen(DiffScreen(old, new, source))

    def action_find(self) -> None:
        project_id = self.project_id  # type: ignore[attr-defined]
        if not project_id:
            self.app.notify("Select a project first.", severity="warning")
            return
        open_find(self.app, project_id)


def open_find(app: NexusApp, project_id: str) -> None:
    """The find prompt; the backup chosen is selected in the main table (from wherever the
    prompt was opened: screens above the main one are closed)."""
    from tui.screens.find import FindScreen

    def jump(backup_id: str | None) -> None:
        if backup_id is None:
            return
        while app.screen is not app.main and len(app.screen_stack) > 1:
            app.pop_screen()
        app.main.table.select_backup(backup_id)
        app.main.table.focus()

    app.push_screen(FindScreen(project_id), jump)
