"""The backup table of one project: newest first, re-sortable, narrowed by the filter bar."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable

from core.models import BackupMetadata
from tui import format as fmt
from tui.filtering import TableFilter

COLUMNS: list[tuple[str, str]] = [
    ("created", "Created"),
    ("status", "Status"),
    ("type", "Type"),
    ("id", "ID"),
    ("size", "Size"),
    ("files", "Files"),
    ("name", "Name/tags"),
]
SORT_KEYS: dict[str, Callable[[BackupMetadata], Any]] = {
    "created": lambda m: fmt.utc(m.created_at),
    "status": lambda m: m.status.value,
    "type": lambda m: m.type.value,
    "id": lambda m: m.id,
    "size": lambda m: m.size_bytes,
    "files": lambda m: m.files_count,
    "name": lambda m: (m.name or "", fmt.tags_text(m.tags)),
}


def name_text(m: BackupMetadata) -> Text:
    """A checkpoint's name (bold), then the other tags."""
    text = Text(m.name or "", style="bold")
    rest = fmt.tags_text({k: v for k, v in m.tags.items() if k != "name"}, 200)
    if rest:
        text.append((" " if m.name else "") + rest)
    return text


def _width(cell: Any) -> int:
    return cell.cell_len if isinstance(cell, Text) else len(str(cell))


@dataclass(frozen=True)
class Layout:
    """What a width shows: every backup's age, status, type, id and name fit without
    sideways scrolling (the detail below shows the rest)."""

    columns: tuple[str, ...]
    short_id: bool  # the id's random part ('fcaf67'), which every command takes
    compact: bool  # '5m ago' and 'incr' rather than '5 minutes ago' and 'incremental'


_ALL = tuple(k for k, _ in COLUMNS)
#: (narrowest table width, layout), widest first.
LAYOUTS: tuple[tuple[int, Layout], ...] = (
    (130, Layout(_ALL, short_id=False, compact=False)),
    (80, Layout(_ALL, short_id=True, compact=False)),
    (0, Layout(("created", "status", "type", "id", "name"), short_id=True, compact=True)),
)
#: A compact type, for the narrow layout.
SHORT_TYPE = {"incremental": "incr", "checkpoint": "ckpt", "snapshot": "snap"}


def layout_for(width: int) -> Layout:
    return next(layout for least, layout in LAYOUTS if width >= least)


def short_id(backup_id: str) -> str:
    """The random part that ends a generated id; an id of another shape is kept whole."""
    head, _, tail = backup_id.rpartition("-")
    return tail if head and len(tail) == 6 else backup_id


#: Columns that read best largest/newest first when first chosen.
_DESCENDING_FIRST = {"created", "size", "files"}


class BackupTable(DataTable):
    """Rows keyed by backup id, so the cursor stays on its backup across refreshes.

    At most MAX_ROWS rows are shown, the first of the filtered and sorted list: a DataTable
    measures every cell of every row it adds (about 0.2 ms a row), so a project with a year
    of hourly backups would take seconds to show and to re-filter. The filter reaches the
    rest (`since:`, `date:`), and the border says how many are not shown.
    """

    MAX_ROWS: ClassVar[int] = 500

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "s", "cycle_sort", "Sort", show=False, id="table.sort", tooltip="Sort by next column"
        ),
        Binding("S", "reverse_sort", "Reverse", show=False, id="table.reverse"),
        # rows, not columns: home and end jump to the first and last backup (vim keys too)
        Binding("home,g", "first_row", "First", show=False, id="table.first"),
        Binding("end,G", "last_row", "Last", show=False, id="table.last"),
        Binding("j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up"),
    ]

    class Highlighted(Message):
        def __init__(self, backup: BackupMetadata | None) -> None:
            super().__init__()
            self.backup = backup

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.project_id: str | None = None
        self.backups: list[BackupMetadata] = []
        self.shown: list[BackupMetadata] = []
        self.matching = 0  # rows the filter lets through, shown or not (MAX_ROWS)
        self._cells: list[list[Any]] = []
        self.filter = TableFilter()
        self.sort_key = "created"
        self.sort_reverse = True
        self._now = datetime.now().astimezone()
        self._last_highlight: str | None = "<none>"
        self.layout_now = layout_for(0)

    def on_mount(self) -> None:
        self._set_columns(layout_for(self.size.width))

    def _set_columns(self, layout: Layout) -> None:
        self.layout_now = layout
        self.clear(columns=True)
        self.shown, self._cells = [], []
        labels = dict(COLUMNS)
        for key in layout.columns:
            self.add_column(labels[key] + "  ", key=key)  # room for the sort arrow
        self._update_headers()

    def on_resize(self) -> None:
        layout = layout_for(self.size.width)
        if layout != self.layout_now:
            self._set_columns(layout)
        self._render_rows(keep=True)

    # -- data

    def show(self, project_id: str | None, backups: list[BackupMetadata], now: datetime) -> None:
        same_project = project_id == self.project_id
        self.project_id = project_id
        self.backups = backups
        self._now = now
        self._render_rows(keep=same_project)

    def set_filter(self, flt: TableFilter) -> None:
        self.filter = flt
        self._render_rows(keep=True)

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort_reverse if key == self.sort_key else key in _DESCENDING_FIRST
        self.sort_key, self.sort_reverse = key, reverse
        self._update_headers()
        self._render_rows(keep=True)

    @property
    def current(self) -> BackupMetadata | None:
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row]

    def find(self, backup_id: str) -> BackupMetadata | None:
        return next((b for b in self.backups if b.id == backup_id), None)

    def select_backup(self, backup_id: str) -> None:
        ids = [b.id for b in self.shown]
        if backup_id in ids:
            self.move_cursor(row=ids.index(backup_id))

    # -- rendering

    def _cell(self, key: str, m: BackupMetadata) -> Any:
        compact = self.layout_now.compact
        if key == "created":
            return (fmt.short_age if compact else fmt.age)(m.created_at, self._now)
        if key == "status":
            return fmt.status_text(m.status)
        if key == "type":
            text = fmt.type_text(m.type)
            return (
                Text(SHORT_TYPE.get(text.plain, text.plain), style=text.style) if compact else text
            )
        if key == "id":
            shown = short_id(m.id) if self.layout_now.short_id else m.id
            return Text(shown, style="bold" if m.name else "")
        if key == "size":
            return Text(fmt.size(m.size_bytes), justify="right")
        if key == "files":
            return Text(str(m.files_count), justify="right")
        return name_text(m)

    def _rows(self, rows: list[BackupMetadata]) -> list[list[Any]]:
        """The cells of `rows`; the last column (name and tags) cut to the room the others
        leave, so nothing scrolls sideways."""
        keys = self.layout_now.columns
        cells = [[self._cell(k, m) for k in keys] for m in rows]
        if cells:
            labels = dict(COLUMNS)
            used = sum(
                max(len(labels[key]) + 2, *(_width(row[i]) for row in cells))
                + 2 * self.cell_padding
                for i, key in enumerate(keys[:-1])
            )
            room = max(8, self.size.width - used - 2 * self.cell_padding - 1)
            for row in cells:
                if row[-1].cell_len > room:
                    row[-1].truncate(room - 1)
                    row[-1].append("…")
        return cells

    def _render_rows(self, *, keep: bool) -> None:
        """Show the filtered, sorted rows, touching as little of the table as possible: a
        rebuild re-measures every cell, which costs tens of ms at a few hundred rows."""
        current = self.current.id if keep and self.current else None
        rows = [b for b in self.backups if self.filter.matches(b)]
        rows.sort(key=SORT_KEYS[self.sort_key], reverse=self.sort_reverse)
        self.matching = len(rows)
        del rows[self.MAX_ROWS :]
        cells = self._rows(rows)
        keys = self.layout_now.columns
        if [m.id for m in rows] == [m.id for m in self.shown] and self.row_count == len(rows):
            for m, new, old in zip(rows, cells, self._cells, strict=True):
                for key, value, before in zip(keys, new, old, strict=True):
                    if value != before:  # and the column grows to fit (a '✓ completed')
                        self.update_cell(m.id, key, value, update_width=True)
        else:
            with self.prevent(DataTable.RowHighlighted):
                self.clear()
                for m, row in zip(rows, cells, strict=True):
                    self.add_row(*row, key=m.id)
            ids = [b.id for b in rows]
            if current in ids:
                self.move_cursor(row=ids.index(current), animate=False)
            elif rows:
                self.move_cursor(row=0, animate=False)
        self.shown, self._cells = rows, cells
        self._update_title()
        self._announce()

    def _update_headers(self) -> None:
        arrow = " ▼" if self.sort_reverse else " ▲"
        for key, label in COLUMNS:
            column = self.columns.get(key)  # type: ignore[call-overload]
            if column is not None:
                column.label = Text(label + (arrow if key == self.sort_key else ""))
        # the header's lines are cached: without this the arrow stays on the old column
        # whenever the new sort leaves the rows in the same order
        self._clear_caches()
        self.refresh()

    def _update_title(self) -> None:
        """Title and subtitle go on the framing pane (the parent), which has the border."""
        pane = self.parent if isinstance(self.parent, Widget) else self
        pane.border_title = f"Backups · {self.project_id}" if self.project_id else "Backups"
        cut = (
            f" · first {len(self.shown):,} of {self.matching:,} shown"
            if self.matching > len(self.shown)
            else ""
        )
        if self.filter.is_empty:
            pane.border_subtitle = f"{len(self.backups)}{cut} · s: sort · /: filter"
        else:
            pane.border_subtitle = (
                f"filter: {self.filter.describe()} · {self.matching} of {len(self.backups)}"
                f"{cut} · esc: clear"
            )

    def _announce(self) -> None:
        current = self.current
        ident = current.id if current else None
        if current is None or ident != self._last_highlight:
            self._last_highlight = ident
            self.post_message(self.Highlighted(current))

    def refresh_highlight(self) -> None:
        """Re-announce the current row (its metadata may have changed on disk)."""
        self._last_highlight = "<stale>"
        self._announce()

    # -- events and actions

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def tick(self, now: datetime) -> None:
        """Let the ages move on (a minute's timer): only the cells that changed are redrawn."""
        self._now = now
        self._render_rows(keep=True)

    def action_cycle_sort(self) -> None:
        keys = list(self.layout_now.columns)
        at = keys.index(self.sort_key) if self.sort_key in keys else -1
        self.sort_by(keys[(at + 1) % len(keys)])

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_key, not self.sort_reverse)
