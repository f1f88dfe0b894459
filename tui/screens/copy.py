"""Copy a project's completed backups into another repository (a directory or s3://...).

The form asks for the target, and the target's password when it is an encrypted repository
opened by another password than the project's; once started it turns into the copy's
progress (bytes, rate, ETA of the backup being copied), then one result line. `escape` hides
it and the copy goes on in the progress panel; `c` (or the button) cancels it: what was
copied stays in the target, and copying again sends only what is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from core.models import CopyResult
from tui import format as fmt
from tui.operations import Operation
from tui.screens.operation_form import OperationForm
from tui.validation import (
    CopyTarget,
    DirectorySuggester,
    describe_copy_target,
    expand,
    is_store_url,
)

if TYPE_CHECKING:
    from tui.app import NexusApp


def copy_summary(result: CopyResult) -> str:
    """'copied 2 backups, 1.2 MiB sent, 1 already there': what a copy did, in one line."""
    there = len(result.already_there)
    if not result.copied:
        if not there:
            return "no completed backup to copy"
        return f"nothing to send: {fmt.plural(there, 'backup')} already there"
    text = f"copied {fmt.plural(len(result.copied), 'backup')}, {fmt.size(result.bytes_sent)} sent"
    text += f", {there} already there" if there else ""
    return text + (
        "; stored there in plain: the target is not encrypted" if result.warnings else ""
    )


def copy_target(value: str) -> str:
    """The target as the engine gets it: a URL as typed, a path expanded (`~`, `$VAR`)."""
    return value.strip() if is_store_url(value) else str(expand(value))


class CopyScreen(OperationForm, ModalScreen[None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close / hide", id="copy.close"),
        Binding("ctrl+s", "start", "Start", id="copy.start"),
        Binding("c", "cancel_copy", "Cancel copy", show=False, id="copy.cancel"),
    ]

    def __init__(self, project_id: str, backups: int, remembered: str | None = None) -> None:
        super().__init__()
        self.project_id = project_id
        #: Completed backups of the project (what a copy takes).
        self.backups = backups
        self.target = remembered or ""
        self.op: Operation | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            with Horizontal(classes="field"):
                yield Label("From", classes="field-label")
                yield Label(self._source(), id="copy-from", markup=False)
            with Horizontal(classes="field"):
                yield Label("To", classes="field-label")
                yield Input(
                    self.target,
                    placeholder="/path/to/another/repository or s3://bucket/prefix",
                    validators=[CopyTarget()],
                    suggester=DirectorySuggester(),
                    id="copy-to",
                    compact=True,
                )
            yield Label("", id="copy-to-help", classes="field-help", markup=False)
            with Horizontal(classes="field"):
                yield Label("Password", classes="field-label")
                yield Input(
                    password=True,
                    placeholder="of an encrypted target (empty: this project's own)",
                    id="copy-password",
                    compact=True,
                )
            yield Vertical(id="progress-area")
            yield Static("", id="result", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Copy (ctrl+s)", id="start", variant="primary", compact=True)
                yield Button("Cancel copy (c)", id="cancel-op", variant="error", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    def _source(self) -> str:
        where = fmt.short_location(self.app.mgr.repository_url, 36)
        return f"{fmt.plural(self.backups, 'completed backup')} in {where}"

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Copy backups · {self.project_id}"
        target = self.query_one("#copy-to", Input)
        target.cursor_blink = self.app.cursor_blink
        self.query_one("#cancel-op").display = False
        self.query_one("#result").display = False
        self._check(self.target)
        target.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._check(event.value)

    def _check(self, value: str) -> bool:
        """Say under the field what the target is, or what is wrong with it."""
        result = CopyTarget().validate(value)
        label = self.query_one("#copy-to-help", Label)
        if result.is_valid:
            label.update(describe_copy_target(value))
        else:
            label.update("" if not value.strip() else "✗ " + result.failure_descriptions[0])
        label.set_class(not result.is_valid, "-bad")
        return result.is_valid

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.action_start()
        elif event.button.id == "cancel-op":
            self.action_cancel_copy()
        else:
            self.action_close()

    def action_start(self) -> None:
        if self.op is not None:
            return
        value = self.query_one("#copy-to", Input).value
        if not self._check(value):
            label = self.query_one("#copy-to-help", Label)
            label.update("✗ " + CopyTarget().validate(value).failure_descriptions[0])
            return
        password = self.query_one("#copy-password", Input).value
        if password:
            self.app.target_passwords[self.project_id] = password
        else:
            self.app.target_passwords.pop(self.project_id, None)
        self.show_operation(self.app.start_copy(self.project_id, copy_target(value)))

    def hide_form_help(self) -> None:
        self.query_one("#copy-to-help").display = False
        self.query_one("#copy-password").disabled = True

    def done_text(self, op: Operation) -> str | None:
        return f"✓ {copy_summary(op.result)}" if isinstance(op.result, CopyResult) else None

    def action_cancel_copy(self) -> None:
        self.cancel_operation()
