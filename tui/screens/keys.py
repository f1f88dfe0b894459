"""`?`: every key that works where you are, the app's own first (this screen's, then the
focused pane's, then those that work everywhere), each with what it does; Textual's generic
keys (cursor movement, copy) last. Scrollable at 80x24; escape, `?` or `q` close it."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def key_groups(screen: Screen) -> list[tuple[str, list[ActiveBinding]]]:
    """The active bindings of `screen`, grouped; the app's own are those with an id."""
    focused = screen.focused
    groups: dict[str, list[ActiveBinding]] = {
        "This screen": [],
        "This pane": [],
        "Everywhere": [],
        "Also": [],
    }
    seen: set[tuple[str, str]] = set()
    for active in screen.active_bindings.values():
        b = active.binding
        if not b.description or (b.action, b.description) in seen:
            continue  # one line per action, whatever its keys ('home' and 'g')
        seen.add((b.action, b.description))
        if b.id is None:
            group = "Also"
        elif active.node is screen:
            group = "This screen"
        elif focused is not None and active.node is focused:
            group = "This pane"
        else:
            group = "Everywhere"
        groups[group].append(active)
    return [(name, rows) for name, rows in groups.items() if rows]


def _keys_of(screen: Screen, binding: Binding) -> str:
    """Every key bound to the action ('home g'), as the footer writes them."""
    keys = [
        screen.app.get_key_display(a.binding)
        for a in screen.active_bindings.values()
        if a.binding.action == binding.action and a.binding.description == binding.description
    ]
    return " ".join(dict.fromkeys(keys))


def render_keys(screen: Screen) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold", no_wrap=True)
    table.add_column()
    for name, rows in key_groups(screen):
        table.add_row(Text(name, style="bold underline"), "")
        for active in rows:
            b = active.binding
            what = b.description
            if b.tooltip and b.tooltip != b.description:
                what = f"{what}: {b.tooltip}"
            table.add_row(_keys_of(screen, b), Text(what, style="" if active.enabled else "dim"))
        table.add_row("", "")
    return table


class KeysScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss(None)", "Close", id="keys.close"),
    ]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.body = render_keys(under)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="keys"):
            with VerticalScroll(id="keys-scroll"):
                yield Static(self.body, id="keys-body")
            yield Static("↑↓ scroll · escape close", id="keys-hint")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "Keys"
        self.query_one("#keys-scroll").focus()
