"""The stats view of a project (issue 15, key T): its backups' durations, new bytes stored
and the stored size over time as sparklines, its totals, and where the selected backup's
time went, phase by phase. Readable at 80×24 and in 256 colours (sparklines and block bars,
no braille).

The data is `core.stats.ProjectStats`, the same as `stats --json`, loaded by a worker that
posts `StatsLoaded`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from itertools import accumulate
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Sparkline, Static

from core.models import RESTORABLE
from core.stats import BackupRow, ProjectStats
from tui import format as fmt
from tui.messages import StatsLoaded
from tui.workers import WorkerErrors

if TYPE_CHECKING:
    from tui.app import NexusApp

#: The phases shown, in the order a backup goes through them (PhaseTimings' fields).
PHASES = (
    ("scan", "scan"),
    ("read", "read"),
    ("chunk_hash", "chunk+hash"),
    ("compress", "compress"),
    ("store", "store"),
    ("index", "index"),
    ("manifest", "manifest"),
    ("validate", "validate"),
)
BAR_WIDTH = 10


def phase_lines(row: BackupRow | None) -> Text:
    """The selected backup's phases as bars scaled to the longest; the overlapping phases
    are summed over the reader threads (docs/design.md §1.5)."""
    if row is None:
        return Text("No backup selected.")
    text = Text()
    text.append(f"{row.id}\n", style="bold")
    phases = row.phases
    if phases is None:
        why = (
            f"the backup {row.status.value}"
            if row.status not in RESTORABLE
            else "made before\nthey were recorded"
        )
        text.append(f"no phase timings: {why}", style="dim")
        return text
    values = [(label, getattr(phases, f"{key}_seconds")) for key, label in PHASES]
    top = max(v for _l, v in values) or 1.0
    for label, value in values:
        filled = round(BAR_WIDTH * value / top)
        text.append(f"{label:<10} ")
        text.append("█" * filled, style="bold yellow" if value == top else "cyan")
        text.append("·" * (BAR_WIDTH - filled), style="dim")
        text.append(f" {fmt.duration(value)}\n")
    text.append(f"took {fmt.duration(row.duration_seconds)}, {phases.workers} readers", "dim")
    return text


def totals_text(stats: ProjectStats, now: datetime) -> str:
    t = stats.totals
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(t.by_status.items())) or "none"
    ratio = f"{t.overall_ratio:.1f}×" if t.overall_ratio else "-"
    growth = f"{fmt.size(t.growth_bytes_per_day)}/day" if t.growth_bytes_per_day else "-"
    verify = "never verified"
    if t.last_verify_at is not None:
        state = "ok" if t.last_verify_ok else "DAMAGED"
        verify = f"verified {state} {fmt.age(t.last_verify_at, now)}"
    return (
        f"{t.backups} backups ({statuses}) · {fmt.size(t.logical_bytes)} in "
        f"{fmt.size(t.stored_bytes)} ({ratio})\n"
        f"growth {growth} · {verify}"
    )


class StatsScreen(WorkerErrors, Screen):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="stats.close"),
        Binding("T", "close", "Close", show=False, id="stats.toggle"),
        Binding("left,k", "step(-1)", "Older", id="stats.older"),
        Binding("right,j", "step(1)", "Newer", id="stats.newer"),
    ]

    DEFAULT_CSS = """
    StatsScreen #stats-box { border: round $primary; border-title-style: bold; padding: 0 1; }
    StatsScreen #stats-totals { height: 2; margin-bottom: 1; }
    StatsScreen #stats-plots { width: 1fr; }
    StatsScreen .plot-label { height: 1; color: $text-muted; }
    StatsScreen Sparkline { height: 3; margin-bottom: 1; }
    StatsScreen #stats-phases { width: 32; margin-left: 2; }
    """

    def __init__(self, project_id: str, backup_id: str | None = None) -> None:
        super().__init__(id="stats")
        self.project_id = project_id
        self.backup_id = backup_id
        self.stats: ProjectStats | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="stats-box"):
            yield Static("Loading…", id="stats-totals")
            with Horizontal():
                with Vertical(id="stats-plots"):
                    for key in ("duration", "stored", "size"):
                        yield Static("", id=f"label-{key}", classes="plot-label")
                        yield Sparkline([], id=f"plot-{key}")
                yield Static("", id="stats-phases")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stats-box").border_title = f"Stats · {self.project_id}"
        self._load()

    @work(exclusive=True, group="stats-load", description="stats")
    async def _load(self) -> None:
        stats = await self.app.mgr.stats(self.project_id)
        self.post_message(StatsLoaded(self.project_id, stats))

    @on(StatsLoaded)
    def _loaded(self, message: StatsLoaded) -> None:
        if message.project_id != self.project_id:
            return
        stats: ProjectStats = message.stats
        self.stats = stats
        now = self.app.now()
        self.query_one("#stats-totals", Static).update(totals_text(stats, now))
        rows = stats.backups
        done = [r for r in rows if r.status in RESTORABLE]
        durations = [r.duration_seconds for r in done]
        stored = [float(r.bytes_stored) for r in rows]
        size = list(accumulate(stored))  # the packs' growth, backup by backup
        self._plot("duration", durations, "duration", fmt.duration)
        self._plot("stored", stored, "new", fmt.size)
        self._plot("size", size, "stored", fmt.size)
        if self.backup_id is None or all(r.id != self.backup_id for r in rows):
            self.backup_id = done[-1].id if done else (rows[-1].id if rows else None)
        self._show_phases()

    def _plot(
        self, key: str, values: list[float], what: str, shown: Callable[[float], str]
    ) -> None:
        label = self.query_one(f"#label-{key}", Static)
        if values:
            label.update(f"{what} · last {shown(values[-1])} · max {shown(max(values))}")
        else:
            label.update(f"{what}: no backups")
        self.query_one(f"#plot-{key}", Sparkline).data = values or [0.0]

    def _row(self) -> BackupRow | None:
        if self.stats is None:
            return None
        return next((r for r in self.stats.backups if r.id == self.backup_id), None)

    def _show_phases(self) -> None:
        self.query_one("#stats-phases", Static).update(phase_lines(self._row()))

    def action_step(self, delta: int) -> None:
        """The phases of the next older or newer backup."""
        if self.stats is None or not self.stats.backups:
            return
        ids = [r.id for r in self.stats.backups]
        at = ids.index(self.backup_id) if self.backup_id in ids else len(ids) - 1
        self.backup_id = ids[max(0, min(len(ids) - 1, at + delta))]
        self._show_phases()

    def action_close(self) -> None:
        self.dismiss()
