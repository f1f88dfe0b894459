"""The `/` filter bar: narrows the table as you type, escape clears, enter keeps it."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label

from tui.filtering import TableFilter
from tui.messages import FilterChanged

HINT = "type: status: tag:k=v since:7d until: date:YYYY-MM-DD, words · enter keep · esc clear"


class FilterBar(Horizontal):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear", "Clear filter", id="filter.clear"),
        Binding("enter", "done", "Keep filter", show=False, id="filter.done"),
    ]

    def compose(self) -> ComposeResult:
        yield Label("/", id="filter-prompt")
        yield Input(placeholder="filter…", id="filter-input", compact=True)
        yield Label(HINT, id="filter-hint")

    @property
    def input(self) -> Input:
        return self.query_one("#filter-input", Input)

    def open(self) -> None:
        self.display = True
        self.input.focus()

    def show_result(self, flt: TableFilter) -> None:
        """Under the input: a parse error if any, else the syntax hint."""
        hint = self.query_one("#filter-hint", Label)
        text = "⚠ " + "; ".join(flt.errors) if flt.errors else HINT
        if str(hint.content) != text:
            hint.update(text, layout=False)  # its width is fixed (app.tcss)
        hint.set_class(bool(flt.errors), "-bad")

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(FilterChanged(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_done()

    def action_clear(self) -> None:
        had_text = bool(self.input.value)
        self.input.value = ""
        if not had_text:
            self.post_message(FilterChanged(""))
        self.display = False
        self.screen.query_one("#backups").focus()

    def action_done(self) -> None:
        if not self.input.value.strip():
            self.display = False
        self.screen.query_one("#backups").focus()
