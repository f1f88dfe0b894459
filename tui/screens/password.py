"""The password of an encrypted project, asked when it is opened (issue 12).

The password is tried here, before the dialog closes (a key derivation, in a thread): a wrong
one says so and the dialog stays for another try, so no operation ever starts on a project
that is still locked, and no worker ever waits on a person. The dialog returns the password
that opened the project (the app keeps it in memory for the session), or None on Escape.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from core.errors import NexusError, WrongPassword

if TYPE_CHECKING:
    from tui.app import NexusApp


class PasswordScreen(ModalScreen[str | None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="password.cancel"),
    ]

    def __init__(self, project_id: str) -> None:
        super().__init__()
        self.project_id = project_id
        self.tries = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="password"):
            yield Static(
                f"Project {self.project_id} is encrypted. Its password opens it for this "
                "session (kept in memory only, never written).",
                id="password-about",
            )
            yield Input(password=True, id="password", compact=True, placeholder="password")
            yield Label("", id="password-error", classes="field-help", markup=False)
            yield Label("enter: unlock · esc: cancel", id="password-keys")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Unlock {self.project_id}"
        field = self.query_one("#password", Input)
        field.cursor_blink = self.app.cursor_blink
        field.focus()

    @property
    def field(self) -> Input:
        return self.query_one("#password", Input)

    def _say(self, text: str, *, bad: bool = True) -> None:
        label = self.query_one("#password-error", Label)
        label.update(text)
        label.set_class(bad, "-bad")

    def action_cancel(self) -> None:
        """Leave the project locked; not while a password is being tried (the manager may be
        opening the project with it: the answer is a moment away)."""
        if not self.field.disabled:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.field.disabled:
            return  # a try is running
        if not event.value:
            self._say("Type the password, or press esc to leave the project locked.")
            return
        self.field.disabled = True
        self._say("checking…", bad=False)
        self._try(event.value)

    @work(exclusive=True, exit_on_error=False, group="unlock")
    async def _try(self, password: str) -> None:
        try:
            await asyncio.to_thread(self.app.mgr.unlock_blocking, self.project_id, password)
        except WrongPassword:
            self.tries += 1
            self._failed(f"Wrong password (try {self.tries}): no key of this project opens.")
        except (NexusError, OSError) as exc:
            from tui.app import describe_error

            self._failed(describe_error(exc))
        else:
            self.dismiss(password)

    def _failed(self, line: str) -> None:
        field = self.field
        field.value = ""
        field.disabled = False
        field.focus()
        self._say(line)
