"""New project from a directory: the id defaults to the directory's name."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label

from tui.screens.pick_directory import PICK_KEY, pick_button, pick_directory
from tui.validation import (
    DirectorySuggester,
    ExistingDirectory,
    ProjectId,
    describe_dir,
    expand,
    suggest_project_id,
)
from tui.widgets.tick import Tick

if TYPE_CHECKING:
    from tui.app import NexusApp


class NewProjectScreen(ModalScreen[None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Close", id="project.close"),
        Binding("ctrl+s", "create", "Create", id="project.create"),
        Binding(PICK_KEY, "pick_dir", "Browse directories", id="project.pickdir"),
    ]

    def __init__(self, existing: set[str]) -> None:
        super().__init__()
        self.existing = existing
        self._id_edited = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            with Horizontal(classes="field"):
                yield Label("Directory", classes="field-label")
                yield Input(
                    placeholder="/path/to/the/data",
                    validators=[ExistingDirectory()],
                    suggester=DirectorySuggester(),
                    id="project-dir",
                    compact=True,
                )
                yield pick_button("project-dir")
            yield Label("", id="project-dir-help", classes="field-help", markup=False)
            with Horizontal(classes="field"):
                yield Label("Project id", classes="field-label")
                yield Input(
                    placeholder="letters, digits, . _ -",
                    validators=[ProjectId(self.existing)],
                    id="project-id",
                    compact=True,
                )
            yield Label("", id="project-id-help", classes="field-help", markup=False)
            with Horizontal(classes="checks"):
                yield Tick("encrypted (a password opens it)", id="project-encrypt", compact=True)
            with Horizontal(classes="field password-field"):
                yield Label("Password", classes="field-label")
                yield Input(password=True, id="project-password", compact=True)
            with Horizontal(classes="field password-field"):
                yield Label("Again", classes="field-label")
                yield Input(password=True, id="project-password-again", compact=True)
            yield Label("", id="project-password-help", classes="field-help password-field")
            with Horizontal(classes="buttons"):
                yield Button("Create (ctrl+s)", id="create", variant="primary", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "New project"
        for inp in self.query(Input):
            inp.cursor_blink = self.app.cursor_blink
        self._show_password(False)
        self.query_one("#project-dir").focus()

    def _show_password(self, show: bool) -> None:
        for widget in self.query(".password-field"):
            widget.display = show

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "project-encrypt":
            self._show_password(event.value)
            if event.value:
                self.query_one("#project-password").focus()

    def _password(self) -> str | bool | None:
        """The new project's password; None: not encrypted; False: not usable (said why)."""
        if not self.query_one("#project-encrypt", Checkbox).value:
            return None
        first = self.query_one("#project-password", Input).value
        again = self.query_one("#project-password-again", Input).value
        problem = (
            "✗ an empty password is refused"
            if not first
            else "✗ the two passwords differ"
            if first != again
            else ""
        )
        help_label = self.query_one("#project-password-help", Label)
        help_label.update(problem or "forgotten, it cannot be recovered: keep it safe")
        help_label.set_class(bool(problem), "-bad")
        if problem:
            self.query_one("#project-password" if not first else "#project-password-again").focus()
            return False
        return first

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "project-dir":
            result = ExistingDirectory().validate(event.value)
            help_label = self.query_one("#project-dir-help", Label)
            help_label.update(
                describe_dir(event.value)
                if result.is_valid
                else "✗ " + result.failure_descriptions[0]
            )
            help_label.set_class(not result.is_valid, "-bad")
            if not self._id_edited and event.value.strip():
                id_input = self.query_one("#project-id", Input)
                with id_input.prevent(Input.Changed):
                    id_input.value = suggest_project_id(event.value)
                self._check_id(id_input.value)
        elif event.input.id == "project-id":
            self._id_edited = True
            self._check_id(event.value)

    def _check_id(self, value: str) -> None:
        result = ProjectId(self.existing).validate(value)
        label = self.query_one("#project-id-help", Label)
        label.update("✓ available" if result.is_valid else "✗ " + result.failure_descriptions[0])
        label.set_class(not result.is_valid, "-bad")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "project-dir":
            self.query_one("#project-id").focus()
        elif event.input.id == "project-password":
            self.query_one("#project-password-again").focus()
        else:
            self.action_create()

    def action_pick_dir(self) -> None:
        pick_directory(self, "project-dir", "Directory of the project")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.has_class("pick-dir"):
            self.action_pick_dir()
        elif event.button.id == "create":
            self.action_create()
        else:
            self.dismiss(None)

    def action_create(self) -> None:
        directory = self.query_one("#project-dir", Input).value
        project_id = self.query_one("#project-id", Input).value.strip()
        for value, validator, field in (
            (directory, ExistingDirectory(), "#project-dir"),
            (project_id, ProjectId(self.existing), "#project-id"),
        ):
            result = validator.validate(value)
            if not result.is_valid:
                self.app.notify(result.failure_descriptions[0], severity="warning")
                self.query_one(field).focus()
                return
        password = self._password()
        if password is False:
            return
        self.app.start_create_project(project_id, str(expand(directory)), password=password)
        self.dismiss(None)
