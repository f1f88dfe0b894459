"""The command palette (ctrl+p): every action of the footer, findable by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import NexusApp


class NexusCommands(Provider):
    @property
    def nexus(self) -> NexusApp:
        return cast("NexusApp", self.app)

    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app = self.nexus
        main = app.main
        return [
            ("Backup: new backup", app.action_new_backup, "Back up the selected project (n)"),
            ("Backup: restore", app.action_restore, "Restore the selected backup (r)"),
            ("Backup: browse files", app.action_browse, "Browse, mark, restore some files (b)"),
            ("Backup: verify", app.action_verify, "Check the selected backup's data (v)"),
            ("Backup: delete", app.action_delete, "Delete the selected backup (d)"),
            ("Project: new project", app.action_new_project, "A project from a directory (N)"),
            ("Project: copy backups", app.action_copy, "Into another repository (C)"),
            ("Project: retention policy", app.action_policy, "Keep rules, preview, apply (P)"),
            ("Project: removed backups", app.action_removed, "In their grace period (U)"),
            ("Project: rename", app.action_rename_project, "Every backup with it (F2)"),
            ("Project: delete", app.action_delete_project, "And all its backups (X)"),
            ("Project: stats", app.action_stats, "History plots and phase timings (T)"),
            ("Backup: protect / unprotect", app.action_protect, "From retention and delete (p)"),
            ("Backup: mark for diff", main.action_mark, "The older side of a diff (m)"),
            ("Backup: diff", main.action_diff, "Marked vs selected, or vs the data dir (D)"),
            ("Backup: find a path", main.action_find, "In every backup of the project (f)"),
            ("Table: filter", main.action_filter, "Narrow the backup table (/)"),
            ("Table: clear filter", main.action_clear_filter, "Show every backup (escape)"),
            ("Table: sort by next column", lambda: main.table.action_cycle_sort(), "(s)"),
            ("Log: cycle level filter", lambda: main.log_tail.action_cycle_level(), "(L)"),
            ("Operations: cancel", app.action_cancel, "Cancel a running operation (c)"),
            ("View: reload", main.action_reload, "Reload projects and backups (ctrl+r)"),
        ]

    async def discover(self) -> Hits:
        if self.screen is not self.nexus.main:
            return
        for name, callback, help_text in self.commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        if self.screen is not self.nexus.main:
            return
        matcher = self.matcher(query)
        for name, callback, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, text=name, help=help_text)
