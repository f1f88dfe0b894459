"""The new-backup form: type, data directory (validated as you type), tags, checkpoint name.

Once started, the form turns into the operation's progress; `escape` hides it and the backup
goes on in the progress panel; `c` (or the button) cancels it, and the backup then shows
FAILED "cancelled".

The directory defaults to the one the project remembers. Backing up another one re-points the
project (files missing from the new directory then show as removed), so the form asks first,
naming both, and only then passes `data_dir_change` (which the engine requires).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from core.models import BackupMetadata, BackupType, CreateRequest
from tui import format as fmt
from tui.operations import Operation
from tui.screens.confirm import ConfirmScreen
from tui.screens.operation_form import OperationForm
from tui.screens.pick_directory import PICK_KEY, pick_button, pick_directory
from tui.validation import (
    DirectorySuggester,
    ExistingDirectory,
    TagList,
    describe_dir,
    expand,
    is_other_directory,
    parse_list,
    parse_tags,
)

if TYPE_CHECKING:
    from tui.app import NexusApp

TYPE_HELP = {
    BackupType.FULL: "reads every file again (the safest; data still deduplicates)",
    BackupType.INCREMENTAL: "reads only what changed since the latest backup, its parent",
    BackupType.SNAPSHOT: "the state now, standing alone: no parent recorded",
    BackupType.CHECKPOINT: "a named restore point; retention judges it on its own",
}


class NewBackupScreen(OperationForm, ModalScreen[None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close / hide", id="new.close"),
        Binding("ctrl+s", "start", "Start", id="new.start"),
        Binding("c", "cancel_backup", "Cancel backup", show=False, id="new.cancel"),
        Binding(PICK_KEY, "pick_dir", "Browse directories", id="new.pickdir"),
    ]

    def __init__(
        self,
        project_id: str,
        remembered: str | None = None,
        backup_type: BackupType = BackupType.FULL,
    ) -> None:
        super().__init__()
        self.project_id = project_id
        #: The directory the project remembers (its backups are of it), if any.
        self.remembered = remembered
        self.data_dir = fmt.home_short(remembered) if remembered else ""
        self.backup_type = backup_type
        self.op: Operation | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            with Horizontal(classes="field"):
                yield Label("Type", classes="field-label")
                yield Select(
                    [(t.value, t) for t in BackupType],
                    value=self.backup_type,
                    allow_blank=False,
                    id="type",
                    compact=True,
                )
            yield Label(TYPE_HELP[self.backup_type], id="type-help", classes="field-help")
            with Horizontal(classes="field"):
                yield Label("Directory", classes="field-label")
                yield Input(
                    self.data_dir,
                    placeholder="/path/to/data",
                    validators=[ExistingDirectory()],
                    suggester=DirectorySuggester(),
                    id="data-dir",
                    compact=True,
                )
                yield pick_button("data-dir")
            yield Label("", id="data-dir-help", classes="field-help", markup=False)
            with Horizontal(classes="field"):
                yield Label("Tags", classes="field-label")
                yield Input(
                    placeholder="env=prod, nightly", validators=[TagList()], id="tags", compact=True
                )
            with Horizontal(classes="field"):
                yield Label("Name", classes="field-label")
                yield Input(placeholder="checkpoint name (optional)", id="name", compact=True)
            with Horizontal(classes="field"):
                yield Label("Exclude", classes="field-label")
                yield Input(
                    placeholder="*.tmp, node_modules (optional)", id="excludes", compact=True
                )
            yield Label("", id="form-error", classes="field-help -bad", markup=False)
            yield Vertical(id="progress-area")
            yield Static("", id="result", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Start (ctrl+s)", id="start", variant="primary", compact=True)
                yield Button("Cancel backup (c)", id="cancel-op", variant="error", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"New backup · {self.project_id}"
        for inp in self.query(Input):
            inp.cursor_blink = self.app.cursor_blink
        self.query_one("#cancel-op").display = False
        self.query_one("#result").display = False
        self._check_dir(self.data_dir)
        self.query_one("#data-dir" if not self.data_dir else "#type").focus()

    # -- validation as you type

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, BackupType):
            self.query_one("#type-help", Label).update(TYPE_HELP[event.value])

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "data-dir":
            self._check_dir(event.value)
        elif event.input.id == "tags" and event.validation_result is not None:
            self._show_error(
                ""
                if event.validation_result.is_valid
                else event.validation_result.failure_descriptions[0]
            )

    def _check_dir(self, value: str) -> None:
        result = ExistingDirectory().validate(value)
        help_label = self.query_one("#data-dir-help", Label)
        if result.is_valid:
            help_label.update(describe_dir(value))
            help_label.remove_class("-bad")
        else:
            help_label.update("✗ " + result.failure_descriptions[0])
            help_label.add_class("-bad")

    def _show_error(self, text: str) -> None:
        self.query_one("#form-error", Label).update(f"✗ {text}" if text else "")

    def build_request(self) -> CreateRequest | None:
        """The request the form describes, or None after showing what is wrong."""
        data_dir = self.query_one("#data-dir", Input).value
        check = ExistingDirectory().validate(data_dir)
        if not check.is_valid:
            self._show_error(check.failure_descriptions[0])
            self.query_one("#data-dir").focus()
            return None
        backup_type = self.query_one("#type", Select).value
        name = self.query_one("#name", Input).value.strip() or None
        try:
            tags = parse_tags(self.query_one("#tags", Input).value)
            return CreateRequest(
                project_id=self.project_id,
                backup_type=backup_type,
                data_dir=str(expand(data_dir)),
                tags=tags,
                name=name,
                excludes=parse_list(self.query_one("#excludes", Input).value),
            )
        except (ValueError, ValidationError) as exc:
            msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            self._show_error(msg)
            return None

    # -- running

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def action_pick_dir(self) -> None:
        if self.op is None:
            pick_directory(self, "data-dir", "Directory to back up")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.has_class("pick-dir"):
            self.action_pick_dir()
        elif event.button.id == "start":
            self.action_start()
        elif event.button.id == "cancel-op":
            self.action_cancel_backup()
        else:
            self.action_close()

    def action_start(self) -> None:
        if self.op is not None:
            return
        req = self.build_request()
        if req is None:
            return
        self._show_error("")
        if is_other_directory(req.data_dir, self.remembered):
            self._confirm_other_directory(req)
            return
        self._start(req)

    def _start(self, req: CreateRequest) -> None:
        self.op = self.app.start_create(req)
        self.show_operation(self.op)

    def _confirm_other_directory(self, req: CreateRequest) -> None:
        """Ask before backing up a directory other than the remembered one; yes re-points
        the project (`data_dir_change`), no leaves the form as it was."""
        old, new = fmt.path(self.remembered or ""), fmt.path(req.data_dir)
        body = Text.assemble(
            "Project ",
            (self.project_id, "bold"),
            " backs up\n",
            (f"  {old}\n", "bold"),
            "This backup is of another directory:\n",
            (f"  {new}\n\n", "bold yellow"),
            "The project then remembers the new one, and files that are in the old "
            "directory but not in the new one show as removed (earlier backups keep them).",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._start(req.model_copy(update={"data_dir_change": True}))
            else:
                self._show_error(f"not started: the project backs up {old}")

        self.app.push_screen(
            ConfirmScreen("Back up another directory?", body, yes="Back it up", danger=True),
            answered,
        )

    FIELDS = ".field Input, .field Select"

    def done_text(self, op: Operation) -> str | None:
        if not isinstance(op.result, BackupMetadata):
            return None
        meta = op.result
        text = (
            f"✓ {meta.id} completed: {fmt.plural(meta.files_count, 'file')}, "
            f"{fmt.size(meta.size_bytes)}"
            f" ({fmt.size(meta.stats.bytes_stored)} new in the repository) in "
            f"{fmt.duration(meta.stats.duration_seconds)}"
        )
        if meta.stats.warnings:
            text += f"\n⚠ {len(meta.stats.warnings)} skipped: " + "; ".join(meta.stats.warnings[:3])
        return text

    def action_cancel_backup(self) -> None:
        self.cancel_operation()
