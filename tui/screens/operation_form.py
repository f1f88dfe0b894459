"""What the forms that start a long operation share (new backup, copy): once started, the form
turns into the operation's progress, then its one result line; `c` cancels it, closing the
form leaves it running."""

from __future__ import annotations

from textual.widgets import Button, Static

from tui import format as fmt
from tui.operations import Operation
from tui.widgets.progress_panel import OperationProgress


class OperationForm:
    """A mixin for a ModalScreen with `#start`, `#cancel-op`, `#progress-area`, `#result` and
    `#close`; it names the inputs to disable (`FIELDS`) and says what success reads as."""

    FIELDS = "Input"
    op: Operation | None

    def done_text(self, op: Operation) -> str | None:
        """The result line of a finished `op`, or None when it did not succeed."""
        raise NotImplementedError

    def hide_form_help(self) -> None:
        """What else the form hides once its operation runs (nothing, unless overridden)."""

    def show_operation(self, op: Operation) -> None:
        """Turn the form into the progress of `op` (also used by screenshots and tests)."""
        self.op = op
        for widget in self.query(self.FIELDS):  # type: ignore[attr-defined]
            widget.disabled = True
        self.hide_form_help()
        self.query_one("#start").display = False  # type: ignore[attr-defined]
        self.query_one("#cancel-op").display = True  # type: ignore[attr-defined]
        self.query_one("#progress-area").mount(  # type: ignore[attr-defined]
            OperationProgress(op, id="form-progress")
        )
        self.query_one("#cancel-op").focus()  # type: ignore[attr-defined]
        self.app.operations_changed.subscribe(self, self._on_ops_changed)  # type: ignore[attr-defined]

    def _on_ops_changed(self, op: Operation) -> None:
        if self.op is None or op.id != self.op.id or op.running:
            return
        self.query_one("#cancel-op").display = False  # type: ignore[attr-defined]
        result = self.query_one("#result", Static)  # type: ignore[attr-defined]
        result.display = True
        text = self.done_text(op) if op.state == "done" else None
        if text is not None:
            result.update(text)
        else:
            result.update(f"✗ {fmt.failure_text(op.state, op.error)}")
            result.add_class("-bad")
        self.query_one("#close", Button).focus()  # type: ignore[attr-defined]

    def cancel_operation(self) -> None:
        if self.op is not None and self.op.running:
            self.app.cancel_operation(self.op)  # type: ignore[attr-defined]

    def action_close(self) -> None:
        if self.op is not None and self.op.running:
            self.app.notify(f"{self.op.label} goes on; c on the main screen cancels it.")  # type: ignore[attr-defined]
        self.dismiss(None)  # type: ignore[attr-defined]
