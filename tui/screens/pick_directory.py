"""Choose a directory with the keyboard: a tree of directories only, opened on the nearest
existing directory to what the field holds, for those who do not remember a path to type.

Forms open it with ctrl+o (or the small button beside a directory field) through
`pick_directory`, which writes the choice back into the field.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DirectoryTree, Input, Label

from tui import format as fmt
from tui.validation import expand

PICK_KEY = "ctrl+o"


def start_directory(value: str) -> Path:
    """The directory a picker opens on: `value` if it is one, else its nearest existing
    ancestor (a restore target that does not exist yet opens on its parent), else home."""
    path = expand(value) if value.strip() else Path.home()
    if not path.is_absolute():
        path = Path.cwd() / path
    for candidate in (path, *path.parents):
        if candidate.is_dir() and os.access(candidate, os.X_OK):
            return candidate
    return Path.home()


class DirectoriesOnly(DirectoryTree):
    """A DirectoryTree without files; hidden directories only when asked for. Single-width
    arrows rather than folder emoji, which some terminals (and fonts over SSH) draw badly."""

    ICON_NODE = "▸ "
    ICON_NODE_EXPANDED = "▾ "
    show_hidden = False

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        out = []
        for path in paths:
            if path.name.startswith(".") and not self.show_hidden:
                continue
            try:
                if path.is_dir():
                    out.append(path)
            except OSError:
                continue
        return out


class DirectoryPickScreen(ModalScreen[str | None]):
    """enter opens a directory, ctrl+s chooses the highlighted one, backspace goes up."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Back", id="pickdir.back"),
        Binding("ctrl+s", "choose", "Choose", id="pickdir.choose"),
        Binding("backspace", "up", "Parent", id="pickdir.up"),
        Binding("full_stop", "toggle_hidden", "Hidden dirs", id="pickdir.hidden"),
    ]

    def __init__(self, title: str, value: str) -> None:
        super().__init__()
        self.title_text = title
        self.start = start_directory(value)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="pick-dir"):
            yield Label("", id="pickdir-where", markup=False)
            yield DirectoriesOnly(self.start, id="pickdir-tree")
            yield Label(
                "enter: open · ctrl+s: choose · backspace: parent · .: hidden",
                classes="field-help",
                id="pickdir-keys",
            )
            with Horizontal(classes="buttons"):
                yield Button("Choose (ctrl+s)", id="choose", variant="primary", compact=True)
                yield Button("Back (esc)", id="back", compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = self.title_text
        self._show_where()
        self.tree.focus()

    @property
    def tree(self) -> DirectoriesOnly:
        return self.query_one(DirectoriesOnly)

    @property
    def highlighted(self) -> Path:
        """The directory under the cursor (the tree's top when the cursor is on none)."""
        node = self.tree.cursor_node
        if node is not None and node.data is not None:
            return Path(node.data.path)
        return Path(self.tree.path)

    def _show_where(self) -> None:
        self.query_one("#pickdir-where", Label).update(fmt.path(self.highlighted))

    def on_tree_node_highlighted(self, _event: DirectoryTree.NodeHighlighted) -> None:
        self._show_where()

    def action_choose(self) -> None:
        self.dismiss(fmt.home_short(self.highlighted))

    def action_up(self) -> None:
        """Show the parent, with the cursor on the directory just left (enter goes back)."""
        tree = self.tree
        here = Path(tree.path)
        if here.parent == here:
            return
        tree.path = here.parent  # the tree resets and loads it in its own time
        self.run_worker(self._cursor_to(here), group="pickdir-up", exclusive=True)

    async def _cursor_to(self, here: Path) -> None:
        tree = self.tree
        for _ in range(200):  # up to 2 s; a directory that big is left with the cursor on top
            await asyncio.sleep(0.01)
            node = next(
                (n for n in tree.root.children if n.data and Path(n.data.path) == here), None
            )
            if node is not None:
                tree.move_cursor(node)
                return

    def action_toggle_hidden(self) -> None:
        self.tree.show_hidden = not self.tree.show_hidden
        self.tree.reload()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "choose":
            self.action_choose()
        else:
            self.dismiss(None)


def pick_button(field_id: str) -> Button:
    """The small button beside a directory field, for the mouse: ctrl+o does the same from
    the keyboard, so tab goes from the directory straight to the next field (a name typed
    after tab lands in it, not on a button)."""
    button = Button("… ^o", id=f"pick-{field_id}", classes="pick-dir", compact=True)
    button.can_focus = False
    return button


def pick_directory(screen: Screen, field_id: str, title: str) -> None:
    """Open the picker on the directory in `#field_id`; the choice replaces the field's text."""
    field = screen.query_one(f"#{field_id}", Input)

    def chosen(path: str | None) -> None:
        if path:
            field.value = path
            field.cursor_position = len(path)
        field.focus()

    screen.app.push_screen(DirectoryPickScreen(title, field.value), chosen)
