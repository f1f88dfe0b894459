"""The detail view: every metadata field of the spec, the stats, the chain and the last verify.

It shows the row's metadata at once, then the fuller `BackupInfo` (manifest, parent chain,
last verify) when the worker that fetches it reports back.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.models import BackupInfo, BackupMetadata, BackupStatus, VerifyResult
from tui import format as fmt


class _Literal(Table):
    """A grid whose str cells are shown as written: a Rich table reads a str as markup, and a
    tag, a source path or an extra value holding `[b]` or `x[/]y` would style itself or fail
    to render (I14). Each str cell goes through `fmt.clean` too (no control character)."""

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        super().add_row(
            *(Text(fmt.clean(r)) if isinstance(r, str) else r for r in renderables), **kwargs
        )


def _grid() -> Table:
    grid = _Literal.grid(padding=(0, 1))
    grid.add_column(style="bold dim", no_wrap=True, min_width=11)
    grid.add_column(overflow="fold")
    return grid


def _section(title: str) -> Text:
    return Text(f"── {title}", style="bold")


def verify_text(result: VerifyResult | None, now: datetime) -> Text:
    if result is None:
        return Text("never verified", style="dim")
    ok = result.ok
    text = Text("✓ ok", style="green") if ok else Text("✗ damaged", style="bold red")
    kind = "quick" if result.quick else "full"
    text.append(
        f" · {kind} · {fmt.exact(result.checked_at)} ({fmt.age(result.checked_at, now)})"
        f" · {fmt.plural(result.files_checked, 'file')}, {fmt.size(result.bytes_checked)}"
    )
    for damaged in result.damaged_files[:5]:
        text.append(f"\n{fmt.name(damaged.path)}: {damaged.reason}", style="red")
    for error in result.errors[:3]:
        text.append(f"\n{error}", style="red")
    return text


def render_detail(meta: BackupMetadata, info: BackupInfo | None, now: datetime) -> Group:
    grid = _grid()
    grid.add_row("ID", Text(meta.id, style="bold"))
    grid.add_row("Project", meta.project_id)
    grid.add_row("Type", fmt.type_text(meta.type))
    grid.add_row("Status", fmt.status_text(meta.status))
    if meta.error_message:
        grid.add_row("Error", Text(meta.error_message, style="red"))
    if meta.protected:
        grid.add_row("Protected", Text("yes: no retention rule removes it, delete refuses it"))
    grid.add_row("Created", f"{fmt.exact(meta.created_at)} ({fmt.age(meta.created_at, now)})")
    grid.add_row(
        "Completed" if meta.status == BackupStatus.COMPLETED else "Ended",
        fmt.exact(meta.completed_at),
    )
    if meta.host:
        grid.add_row("Made by", f"{meta.user or '?'}@{meta.host}")
    exact = f" ({meta.size_bytes:,} bytes)" if meta.size_bytes >= 1024 else ""
    grid.add_row("Size", fmt.size(meta.size_bytes) + exact)
    grid.add_row("Files", f"{meta.files_count:,}")
    grid.add_row("Checksum", meta.checksum or "-")
    # every backup is complete on its own: the parent is what it was made from (its unchanged
    # files reused), never something it needs
    parent = meta.parent_backup_id or "- (read afresh)"
    if info is not None and meta.parent_backup_id in info.deleted_parents:
        parent += " (deleted)"
    grid.add_row("Made from", parent)
    if info is not None and len(info.parent_chain) > 1:
        gone = set(info.deleted_parents)
        links = [f"{b} (deleted)" if b in gone else b for b in reversed(info.parent_chain)]
        grid.add_row("Lineage", " → ".join([*links, meta.id]))
    grid.add_row("Tags", fmt.tags_text(meta.tags, 400) or "-")
    grid.add_row("Extra", json.dumps(meta.extra, sort_keys=True) if meta.extra else "-")
    if info is not None and info.manifest is not None:
        man = info.manifest
        source = fmt.path(man.source) if man.source else "?"
        grid.add_row("Source", f"{source} on {man.hostname}" if man.hostname else source)

    s = meta.stats
    stats = _grid()
    stats.add_row("Read", fmt.size(s.bytes_read))
    stats.add_row("Stored", f"{fmt.size(s.bytes_stored)} new in packs")
    stats.add_row(
        "Files",
        f"{s.files_new} new · {s.files_changed} changed · {s.files_unchanged} unchanged"
        f" · {s.files_removed} removed",
    )
    stats.add_row("Dirs, links", f"{s.dirs_count} dirs · {s.symlinks_count} symlinks")
    stats.add_row("Chunks", f"{s.chunks_total:,} in the backup · {s.chunks_new:,} new")
    stats.add_row("Duration", fmt.duration(s.duration_seconds))
    stats.add_row("Speed", fmt.speed(meta.size_bytes, s.bytes_read, s.duration_seconds))
    if s.warnings:
        stats.add_row(
            "Warnings", Text("\n".join([f"{len(s.warnings)}:", *s.warnings[:5]]), style="yellow")
        )

    verify = _grid()
    if info is None:
        verify.add_row("Verified", Text("loading…", style="dim"))
    else:
        verify.add_row("Verified", verify_text(info.last_verify, now))
    return Group(grid, _section("Stats"), stats, _section("Last verify"), verify)


class DetailView(VerticalScroll):
    """Scrollable (focusable) so a long error or warning list can be read with the keys."""

    can_focus = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Detail"
        self.meta: BackupMetadata | None = None
        self.info: BackupInfo | None = None

    def compose(self):
        yield Static(Text("No backup selected.", style="dim"), id="detail-body")

    def show(
        self,
        meta: BackupMetadata | None,
        info: BackupInfo | None,
        now: datetime,
        *,
        hint: str | None = None,
    ) -> None:
        """Show a backup, or (none) `hint`: what to do next, for an empty table."""
        self.meta, self.info = meta, info
        body = self.query_one("#detail-body", Static)
        if meta is None:
            body.update(Text(hint or "No backup selected.", style="dim"))
            self.border_subtitle = ""
            return
        body.update(render_detail(meta, info, now))
        self.border_subtitle = meta.id

    def tick(self, now: datetime) -> None:
        """Let the ages ('5 minutes ago') move on."""
        if self.meta is not None:
            self.query_one("#detail-body", Static).update(render_detail(self.meta, self.info, now))
