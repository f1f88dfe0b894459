"""The diff of two backups (or of a backup and the data directory now) as a tree: each folder
with its counts of added, removed and changed entries below it, each entry with what changed.

The diff is computed by a worker (`mgr.diff`) that posts `DiffLoaded`; the tree is built from
its changes, folders first. `r` restores the selected path (a file or a folder) through the
restore dialog, with its preview and confirmation: from the newer backup, or from the older
one when the path was removed or the newer side is the live directory (bringing back what the
backup held).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Label, Tree

from core.compare import DiffChange, DiffResult, mark, summary
from core.compare_names import LIVE
from core.models import BackupMetadata
from tui import format as fmt
from tui.messages import DiffLoaded
from tui.workers import WorkerErrors

if TYPE_CHECKING:
    from tui.app import NexusApp

#: A diff of at most this many changes opens with every folder expanded.
EXPAND_ALL = 300
MARK_STYLE = {"+": "green", "-": "red", "M": "yellow", "T": "magenta"}


@dataclass
class Folder:
    """A folder of the diff tree: its own change (if any), its children, and counts below."""

    name: str
    path: str
    change: DiffChange | None = None
    children: dict[str, Folder] = field(default_factory=dict)
    leaves: list[DiffChange] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    changed: int = 0

    def count(self, change: DiffChange) -> None:
        if change.status == "added":
            self.added += 1
        elif change.status == "removed":
            self.removed += 1
        else:
            self.changed += 1

    def counts(self) -> str:
        parts = [f"+{self.added}" if self.added else "", f"-{self.removed}" if self.removed else ""]
        parts.append(f"~{self.changed}" if self.changed else "")
        return " ".join(p for p in parts if p)


def build_tree(changes: list[DiffChange]) -> Folder:
    """The changes (in the manifest's order) as folders: a change to a directory is its
    folder's own; every change counts in each folder above it."""
    top = Folder("", "")
    for change in changes:
        parts = change.exact.split("/")  # exact names (surrogate escapes), shown cleaned
        node = top
        for i, part in enumerate(parts[:-1]):
            node.count(change)
            node = node.children.setdefault(part, Folder(part, "/".join(parts[: i + 1])))
        node.count(change)
        if change.kind == "dir":
            folder = node.children.setdefault(parts[-1], Folder(parts[-1], change.exact))
            folder.change = change
        else:
            node.leaves.append(change)
    return top


def change_label(change: DiffChange, name: str) -> Text:
    m = mark(change)
    text = Text()
    text.append(f"{m} ", style=f"bold {MARK_STYLE[m]}")
    text.append(fmt.name(name) + ("/" if change.kind == "dir" else ""))
    what = summary(change)
    if what:
        text.append(f"  {fmt.clean(what)}", style="dim")
    return text


def folder_label(folder: Folder) -> Text:
    if folder.change is not None:
        text = change_label(folder.change, folder.name)
    else:
        text = Text("  " + fmt.name(folder.name) + "/", style="bold")
    counts = folder.counts()
    if counts:
        text.append(f"  {counts}", style="cyan")
    return text


class DiffTree(Tree[DiffChange | Folder]):
    pass


class DiffScreen(WorkerErrors, Screen[None]):
    """The changes from backup `old` to `new` (None: the data directory now)."""

    app: NexusApp

    DEFAULT_CSS = """
    #diff-header { height: 1; width: 100%; background: $boost; padding: 0 1; }
    #diff-tree {
        height: 1fr; border: round $accent; border-title-color: $text-muted;
        scrollbar-size-vertical: 1; scrollbar-size-horizontal: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="diff.back"),
        Binding("r", "restore_selected", "Restore selected", id="diff.restore"),
        Binding("e", "expand_all", "Expand all", id="diff.expand"),
    ]

    def __init__(self, old: BackupMetadata, new: BackupMetadata | None, source: str | None) -> None:
        super().__init__()
        self.old, self.new, self.source = old, new, source
        self.project_id = old.project_id
        self.result: DiffResult | None = None

    @property
    def new_name(self) -> str:
        return self.new.id if self.new is not None else "the data directory now"

    def compose(self) -> ComposeResult:
        yield Label(self._header(), id="diff-header")
        yield DiffTree(Text(f"{self.old.id} → {self.new_name}", style="bold"), id="diff-tree")
        yield Footer(compact=True)

    def _header(self) -> Text:
        text = Text.assemble(("Diff ", "bold"), (f"{self.project_id}: ", "bold"))
        text.append(f"{self.old.id} → {self.new_name}")
        if self.result is None:
            text.append(" · comparing…", style="dim italic")
        return text

    def _totals(self) -> str:
        """The border's summary: '+2 -1 ~3 · 40 unchanged' (exact, however many are shown)."""
        r = self.result
        if r is None:
            return ""
        t = r.totals
        parts = [f"+{t.added} -{t.removed} ~{t.changed}", f"{t.unchanged} unchanged"]
        if t.content_unknown:
            parts.append(f"{t.content_unknown} not compared by content")
        if r.truncated:
            parts.append(f"first {len(r.changes)} shown")
        return " · ".join(parts)

    def on_mount(self) -> None:
        tree = self.query_one(DiffTree)
        tree.border_title = "r: restore selected · e: expand all · esc: back"
        tree.focus()
        self.load_diff()

    @work(group="diff", exclusive=True, exit_on_error=False, description="diff")
    async def load_diff(self) -> None:
        b = self.new.id if self.new is not None else LIVE
        result = await self.app.mgr.diff(self.project_id, self.old.id, b, limit=20_000)
        self.post_message(DiffLoaded(result))

    def on_diff_loaded(self, message: DiffLoaded) -> None:
        self.result = message.result
        self.query_one("#diff-header", Label).update(self._header())
        tree = self.query_one(DiffTree)
        tree.border_subtitle = self._totals()
        tree.clear()
        top = build_tree(message.result.changes)
        self._fill(tree.root, top)
        if not message.result.changes:
            tree.root.add_leaf(Text("(no differences)", style="dim italic"))
        if len(message.result.changes) <= EXPAND_ALL:
            tree.root.expand_all()
        else:
            tree.root.expand()
        for w in message.result.warnings[:3]:
            self.app.notify(fmt.clean(w), severity="warning")

    def _fill(self, node, folder: Folder) -> None:  # type: ignore[no-untyped-def]
        for name in sorted(folder.children):
            child = folder.children[name]
            sub = node.add(folder_label(child), data=child, allow_expand=True)
            self._fill(sub, child)
            if not child.children and not child.leaves:
                sub.allow_expand = False
        for change in folder.leaves:
            node.add_leaf(change_label(change, change.exact.rpartition("/")[2]), data=change)

    def action_expand_all(self) -> None:
        self.query_one(DiffTree).root.expand_all()

    def restore_source(self, change: DiffChange | None) -> BackupMetadata:
        """The backup a selected path is restored from (see the module docstring)."""
        if self.new is None or (change is not None and change.status == "removed"):
            return self.old
        return self.new

    def action_restore_selected(self) -> None:
        from tui.screens.restore import RestoreScreen

        node = self.query_one(DiffTree).cursor_node
        data = node.data if node is not None else None
        if data is None:
            self.app.notify("Select a changed file or folder to restore.", severity="warning")
            return
        change = data if isinstance(data, DiffChange) else data.change
        if change is not None and change.status == "added" and self.new is None:
            self.app.notify(
                f"{fmt.name(change.exact)} is new since {self.old.id}: nothing to restore.",
                severity="warning",
            )
            return
        path = change.exact if change is not None else data.path  # type: ignore[union-attr]
        backup = self.restore_source(change)
        self.app.push_screen(RestoreScreen(backup, self.source, [path]))
