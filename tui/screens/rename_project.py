"""F2: a project's new name, checked as it is typed (a valid id, not one in use); `enter`
renames, `escape` leaves it as it is."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tui.validation import ProjectId


class RenameProjectScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel", id="rename.cancel"),
    ]

    def __init__(self, project_id: str, existing: set[str]) -> None:
        super().__init__()
        self.project_id = project_id
        self.existing = existing

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="password"):
            yield Static(
                f"Every backup of {self.project_id} moves with it; its logs follow.",
                id="rename-body",
            )
            yield Input(
                self.project_id,
                validators=[ProjectId(self.existing)],
                id="rename-to",
                compact=True,
            )
            yield Label("", id="rename-help", classes="field-help", markup=False)
            yield Static("enter rename · escape cancel", id="password-keys")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Rename project {self.project_id}"
        self.query_one("#rename-to", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        result = event.validation_result
        help_label = self.query_one("#rename-help", Label)
        problem = "" if result is None or result.is_valid else result.failure_descriptions[0]
        if event.value == self.project_id:
            problem = ""
        help_label.update(f"✗ {problem}" if problem else "")
        help_label.set_class(bool(problem), "-bad")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        if value == self.project_id:
            self.dismiss(None)
        elif event.validation_result is None or event.validation_result.is_valid:
            self.dismiss(value)
