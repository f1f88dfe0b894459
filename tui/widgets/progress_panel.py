"""Progress of running operations: one row per operation, each with its own bar.

`OperationProgress` shows one operation and is reused inside the new-backup and restore
dialogs; `ProgressPanel` stacks one per running operation above the footer. Both listen to the
app's `operations_changed` signal, so any number of views follow the same operation.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, ProgressBar

from tui import format as fmt
from tui.operations import Operation

_STATE_GLYPH = {"running": "▶", "done": "✓", "failed": "✗", "cancelled": "■"}


class OperationProgress(Vertical):
    """Two lines: label and bar; then bytes, files, rate, ETA and the current file."""

    def __init__(self, op: Operation, **kwargs) -> None:
        super().__init__(**kwargs)
        self.op = op

    def compose(self) -> ComposeResult:
        with Horizontal(classes="op-head"):
            yield Label(self._title(), classes="op-label", markup=False)
            yield ProgressBar(total=1, show_eta=False, classes="op-bar")
        yield Label(fmt.progress_line(self.op.progress), classes="op-line", markup=False)

    def on_mount(self) -> None:
        self.app.operations_changed.subscribe(self, self._on_ops_changed)  # type: ignore[attr-defined]
        self.update_view()

    def _title(self) -> str:
        return f"{_STATE_GLYPH.get(self.op.state, '·')} {self.op.label}"

    def _on_ops_changed(self, op: Operation) -> None:
        if op.id == self.op.id:
            self.op = op
            self.update_view()

    def update_view(self) -> None:
        op = self.op
        total, done = fmt.fraction(op.progress)
        bar = self.query_one(ProgressBar)
        if op.state == "running":
            # an unknown total shows an empty bar, not Textual's endless animation (which
            # costs CPU and makes screenshots differ)
            bar.update(total=total or 1, progress=done if total else 0)
        elif op.state == "done":
            bar.update(total=1, progress=1)
        else:
            bar.update(total=total or 1, progress=done)
        self.query_one(".op-label", Label).update(self._title())
        line = fmt.progress_line(op.progress)
        if op.error:
            line = op.error
        self.query_one(".op-line", Label).update(line)
        self.set_class(op.state in ("failed", "cancelled"), "-failed")
        self.set_class(op.state == "done", "-done")


class ProgressPanel(VerticalScroll):
    """Docked above the footer while anything runs; hidden otherwise."""

    can_focus = False

    def on_mount(self) -> None:
        self.app.operations_changed.subscribe(self, self._on_ops_changed)  # type: ignore[attr-defined]
        self.display = False

    def _on_ops_changed(self, op: Operation) -> None:
        rows = {row.op.id: row for row in self.query(OperationProgress)}
        row = rows.get(op.id)
        if op.running and row is None:
            self.mount(OperationProgress(op, id=f"progress-{op.id}"))
        elif not op.running and row is not None:
            row.remove()
        running = len(self.app.operations.running)  # type: ignore[attr-defined]
        self.display = running > 0
        self.border_title = f"Running ({running}) · c: cancel"
