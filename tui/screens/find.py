"""Find a path in every backup of the project: a prompt, then the backups holding what matched
(newest first, runs of backups where it did not change as one line); `enter` on one jumps to
that backup in the main table.

The search runs in a worker (`mgr.find`) that posts `FindLoaded`; typing again starts a new
search and cancels the one running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from core.compare import FindResult, FindVersion
from tui import format as fmt
from tui.messages import FindLoaded
from tui.workers import WorkerErrors

if TYPE_CHECKING:
    from tui.app import NexusApp


def version_text(path: str, v: FindVersion) -> Text:
    text = Text(fmt.name(path), style="bold")
    if v.backups == 1:
        text.append(f"  {v.newest}")
    else:
        text.append(f"  {v.newest} … {v.oldest} ({v.backups} backups)")
    link = f"→ {fmt.name(v.exact_target or '')}"
    what = {"file": fmt.size(v.size), "dir": "dir", "symlink": link}[v.kind]
    when = fmt.utc(v.mtime).strftime("%Y-%m-%d %H:%M") if v.mtime else "-"
    text.append(f"  {what}  {when}", style="dim")
    return text


class FindScreen(WorkerErrors, ModalScreen[str | None]):
    """Dismissed with the id of the backup to jump to (None: nothing chosen)."""

    app: NexusApp

    DEFAULT_CSS = """
    #dialog.find { width: 100; }
    #dialog.find #find-results { height: auto; max-height: 16; }
    #dialog.find #find-status { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Back", id="find.back"),
    ]

    def __init__(self, project_id: str) -> None:
        super().__init__()
        self.project_id = project_id
        self.result: FindResult | None = None
        self._targets: list[str] = []  # the backup each option jumps to

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="find"):
            yield Input(placeholder="a name, part of a path, or a glob (*.conf)", id="find-input")
            yield Label("Type a pattern and press enter.", id="find-status", markup=False)
            yield OptionList(id="find-results")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Find in every backup of {self.project_id}"
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        pattern = event.value
        if not pattern:
            return
        self.query_one("#find-status", Label).update(f"Searching for {fmt.clean(pattern)!r}…")
        self.search(pattern)

    @work(group="find", exclusive=True, exit_on_error=False, description="find")
    async def search(self, pattern: str) -> None:
        result = await self.app.mgr.find(self.project_id, pattern, limit=200)
        self.post_message(FindLoaded(result))

    def on_find_loaded(self, message: FindLoaded) -> None:
        self.result = r = message.result
        results = self.query_one(OptionList)
        results.clear_options()
        self._targets = []
        for hit in r.hits:
            for v in hit.versions:
                results.add_option(Option(version_text(hit.exact, v), id=str(len(self._targets))))
                self._targets.append(v.newest)
        status = (
            f"{fmt.plural(len(r.hits), 'path')} in {fmt.plural(r.backups_searched, 'backup')}"
            + (" (more matched: narrow the pattern)" if r.truncated else "")
            + (" · enter: go to the backup" if r.hits else "")
        )
        self.query_one("#find-status", Label).update(status)
        if r.hits:
            results.highlighted = 0
            results.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self._targets[int(event.option.id or 0)])
