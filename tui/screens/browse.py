"""Browse a backup as a lazily expanded tree, mark files and folders, restore only those.

A folder's children are fetched (`mgr.browse`) the first time it is expanded, so a backup of a
million files opens at once. `space` marks, `r` restores the marked paths (through the same
restore dialog, with its preview and confirmation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Label, Tree
from textual.widgets.tree import TreeNode

from core.models import BackupMetadata, TreeEntry
from tui import format as fmt
from tui.messages import TreeChildrenLoaded
from tui.workers import WorkerErrors

if TYPE_CHECKING:
    from tui.app import NexusApp


def entry_label(entry: TreeEntry, marked: bool) -> Text:
    text = Text()
    text.append("● " if marked else "  ", style="bold yellow")
    if entry.kind == "dir":
        text.append(fmt.name(entry.name) + "/", style="bold")
    elif entry.kind == "symlink":
        text.append(fmt.name(entry.name), style="cyan")
        target = "?" if entry.target is None else fmt.name(entry.target)
        text.append(f" → {target}", style="dim cyan")
    else:
        text.append(fmt.name(entry.name))
    details = []
    if entry.kind == "file" or (entry.kind == "dir" and entry.size):  # a folder: what it holds
        details.append(fmt.size(entry.size))
    if entry.mtime is not None:
        details.append(fmt.utc(entry.mtime).strftime("%Y-%m-%d %H:%M"))
    if details:
        text.append("  " + "  ".join(details), style="dim")
    return text


class FileTree(Tree[TreeEntry]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark", id="browse.mark", tooltip="Mark for restore"),
    ]

    def action_mark(self) -> None:
        self.screen.toggle_mark(self.cursor_node)  # type: ignore[attr-defined]


class BrowseScreen(WorkerErrors, Screen[None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="browse.back"),
        Binding("r", "restore_marked", "Restore marked", id="browse.restore"),
        Binding("u", "clear_marks", "Unmark all", id="browse.unmark"),
        Binding("f", "find", "Find", id="browse.find", tooltip="Find a path in every backup"),
    ]

    def __init__(self, backup: BackupMetadata, source: str | None) -> None:
        super().__init__()
        self.backup = backup
        self.project_id = backup.project_id
        self.source = source
        self.marked: set[str] = set()
        self._loaded: set[int] = set()

    def compose(self) -> ComposeResult:
        yield Label(self._header(), id="browse-header")
        root = TreeEntry(path="", name=self.backup.id, kind="dir", has_children=True)
        yield FileTree(Text(self.backup.id, style="bold"), data=root, id="tree")
        yield Footer(compact=True)

    def _header(self) -> Text:
        b = self.backup
        return Text.assemble(
            ("Browse ", "bold"),
            (f"{b.project_id}/{b.id}", "bold"),
            f" · {b.type.value} · {fmt.exact(b.created_at)} · {fmt.plural(b.files_count, 'file')}",
            f" · {len(self.marked)} marked" if self.marked else "",
        )

    def on_mount(self) -> None:
        tree = self.query_one(FileTree)
        tree.border_title = "space: mark · enter: open · r: restore marked · esc: back"
        tree.root.expand()
        tree.focus()

    # -- lazy loading

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[TreeEntry]) -> None:
        node = event.node
        if node.id in self._loaded or node.data is None:
            return
        self._loaded.add(node.id)
        node.add_leaf(Text("loading…", style="dim italic"))
        self.load_children(node.id, node.data.path)

    @work(group="browse", exit_on_error=False, description="browse")
    async def load_children(self, node_id: int, path: str) -> None:
        entries = await self.app.mgr.browse(self.backup.project_id, self.backup.id, path)
        self.post_message(TreeChildrenLoaded(node_id, entries))

    def on_tree_children_loaded(self, message: TreeChildrenLoaded) -> None:
        tree = self.query_one(FileTree)
        try:
            node = tree.get_node_by_id(message.node_id)  # type: ignore[arg-type]
        except Exception:
            return
        node.remove_children()
        entries = sorted(message.entries, key=lambda e: (e.kind != "dir", e.name))
        for entry in entries:
            label = entry_label(entry, self._is_marked(entry.path))
            if entry.kind == "dir":
                node.add(label, data=entry, allow_expand=True)
            else:
                node.add_leaf(label, data=entry)
        if not entries:
            node.add_leaf(Text("(empty)", style="dim italic"))

    # -- marks

    def _is_marked(self, path: str) -> bool:
        return path in self.marked or any(path.startswith(m + "/") for m in self.marked)

    def toggle_mark(self, node: TreeNode[TreeEntry] | None) -> None:
        if node is None or node.data is None or not node.data.path:
            self.app.notify("Mark files or folders inside the backup (not its root).")
            return
        path = node.data.path
        if path in self.marked:
            self.marked.discard(path)
        else:
            self.marked = {m for m in self.marked if not m.startswith(path + "/")}
            self.marked.add(path)
        self._relabel(self.query_one(FileTree).root)
        self.query_one("#browse-header", Label).update(self._header())
        tree = self.query_one(FileTree)
        tree.action_cursor_down()

    def _relabel(self, node: TreeNode[TreeEntry]) -> None:
        for child in node.children:
            if child.data is not None:
                child.set_label(entry_label(child.data, self._is_marked(child.data.path)))
            self._relabel(child)

    def action_clear_marks(self) -> None:
        self.marked.clear()
        self._relabel(self.query_one(FileTree).root)
        self.query_one("#browse-header", Label).update(self._header())

    def action_restore_marked(self) -> None:
        from tui.screens.restore import RestoreScreen

        paths = sorted(self.marked)
        if not paths:
            node = self.query_one(FileTree).cursor_node
            if node is not None and node.data is not None and node.data.path:
                paths = [node.data.path]
        self.app.push_screen(RestoreScreen(self.backup, self.source, paths))

    def action_find(self) -> None:
        from tui.screens.compare import open_find

        open_find(self.app, self.project_id)
