"""Backups retention removed that are still in their grace period: still restorable, and
`u` brings the highlighted one back into the list (retention then judges it again)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Static

from core.errors import NexusError
from core.models import BackupMetadata
from tui import format as fmt

if TYPE_CHECKING:
    from tui.app import NexusApp


def _left(meta: BackupMetadata, now: datetime) -> str:
    """How long until the backup's data is freed, in whole hours (minutes in the last one)."""
    if meta.purge_after is None:
        return "-"
    seconds = max(0.0, (meta.purge_after - now).total_seconds())
    return f"{int(seconds // 3600)} h" if seconds >= 3600 else f"{int(seconds // 60)} min"


class RemovedScreen(ModalScreen[None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("u", "undelete", "Undelete", id="removed.undelete"),
        Binding("escape", "close", "Close", id="removed.close"),
    ]

    def __init__(self, project_id: str) -> None:
        super().__init__()
        self.project_id = project_id
        self.removed: list[BackupMetadata] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form removed"):
            yield Static("", id="removed-help", markup=False)
            yield DataTable(id="removed-table", cursor_type="row")
            with Horizontal(classes="buttons"):
                yield Button("Undelete (u)", id="undelete", variant="primary", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Removed backups · {self.project_id}"
        table = self.query_one("#removed-table", DataTable)
        table.add_column("backup", key="id", width=22)
        table.add_column("made", key="made", width=12)
        table.add_column("freed in", key="purge", width=9)
        table.add_column("why", key="why")
        self._load()

    @work(exclusive=True, group="removed-load")
    async def _load(self) -> None:
        help_line = self.query_one("#removed-help", Static)
        try:
            self.removed = await self.app.mgr.removed(self.project_id)
        except (NexusError, OSError) as exc:
            help_line.update(f"✗ {exc}")
            return
        table = self.query_one("#removed-table", DataTable)
        table.clear()
        now = self.app.now()
        for meta in self.removed:
            left = (
                fmt.duration((meta.purge_after - now).total_seconds()) if meta.purge_after else "-"
            )
            table.add_row(
                meta.id,
                fmt.age(meta.created_at, now),
                left,
                meta.removed_reason or "retention",
                key=meta.id,
            )
        if self.removed:
            help_line.update(
                f"{fmt.plural(len(self.removed), 'backup')} removed by retention, still "
                "restorable until freed; u brings the highlighted one back."
            )
            table.focus()
        else:
            help_line.update("No removed backup is waiting: nothing to undelete.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "undelete":
            self.action_undelete()
        else:
            self.action_close()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_undelete(self) -> None:
        if self.app.refuse_write("undelete a backup") or not self.removed:
            return
        table = self.query_one("#removed-table", DataTable)
        row = table.cursor_row
        if 0 <= row < len(self.removed):
            self._undelete(self.removed[row].id)

    @work(exclusive=True, group="removed-undelete", exit_on_error=False)
    async def _undelete(self, backup_id: str) -> None:
        await self.app.mgr.undelete(self.project_id, backup_id)
        self.app.notify(f"{backup_id} is listed again.", title="Undeleted")
        self.app.main.reload(project_id=self.project_id)
        self._load()
