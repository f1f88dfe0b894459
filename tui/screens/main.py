"""The main screen: projects, backup table with filter, detail and live log, progress.

It loads what it shows through workers (which post typed messages) and polls the repository
cheaply for changes made by other processes. Actions that change things live on the app, so
that they outlive this screen's dialogs and are reachable from the command palette.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import DescendantFocus, Resize
from textual.screen import Screen
from textual.widgets import Footer, Static

from core.errors import NotFound, WrongPassword
from core.models import BackupMetadata, ProjectSummary
from tui.filtering import awaiting_value, parse_filter
from tui.messages import (
    BackupInfoLoaded,
    BackupsLoaded,
    FilterChanged,
    ProjectLocked,
    ProjectsLoaded,
    RepositoryChanged,
)
from tui.screens.compare import COMPARE_BINDINGS, CompareActions
from tui.widgets.backups_table import BackupTable
from tui.widgets.detail import DetailView
from tui.widgets.filter_bar import FilterBar
from tui.widgets.log_tail import LogTail
from tui.widgets.progress_panel import ProgressPanel
from tui.widgets.projects import ProjectList
from tui.workers import WorkerErrors

if TYPE_CHECKING:
    from tui.app import NexusApp

#: Below this width the detail and the log share one pane (switch with 3 / 4).
NARROW_WIDTH = 110
INFO_DELAY = 0.12
#: Seconds between redraws of the ages ('5 minutes ago'): the finest unit shown is a minute
#: past the first ('14 seconds ago' is only ever the first minute).
AGE_TICK = 30.0


class MainScreen(CompareActions, WorkerErrors, Screen):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "app.new_backup", "New", id="new_backup", tooltip="Back up the project"),
        Binding("r", "app.restore", "Restore", id="restore", tooltip="Restore the backup"),
        Binding("b", "app.browse", "Browse", id="browse", tooltip="Browse and pick files"),
        Binding("v", "app.verify", "Verify", id="verify", tooltip="Verify the backup"),
        Binding("d", "app.delete", "Delete", id="delete", tooltip="Delete the backup"),
        Binding("C", "app.copy", "Copy", id="copy", tooltip="Copy the backups elsewhere"),
        Binding("N", "app.new_project", "Project", id="new_project", tooltip="New project"),
        Binding("P", "app.policy", "Retention", show=False, id="policy", tooltip="Retention"),
        Binding("p", "app.protect", "Protect", show=False, id="protect", tooltip="(Un)protect"),
        Binding("U", "app.removed", "Removed", show=False, id="removed", tooltip="Undelete"),
        Binding(
            "f2",
            "app.rename_project",
            "Rename project",
            show=False,
            id="rename_project",
            tooltip="Give the project a new name",
        ),
        Binding(
            "X",
            "app.delete_project",
            "Delete project",
            show=False,
            id="delete_project",
            tooltip="Delete the project and all its backups",
        ),
        # not S: the backup table reverses its sort with S
        Binding("T", "app.stats", "Stats", show=False, id="stats", tooltip="Plots and phases"),
        # shown in the table's border ("/: filter"), so the footer keeps room at 80 columns
        Binding("slash", "filter", "Filter", show=False, id="filter", tooltip="Filter the table"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear_filter"),
        Binding("c", "app.cancel", "Cancel op", show=False, id="cancel"),
        Binding("1", "focus_pane('projects')", "Projects", show=False, id="pane.projects"),
        Binding("2", "focus_pane('backups')", "Backups", show=False, id="pane.backups"),
        Binding("3", "focus_pane('detail')", "Detail", show=False, id="pane.detail"),
        Binding("4", "focus_pane('log')", "Log", show=False, id="pane.log"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="reload"),
        Binding("u", "unlock", "Unlock", show=False, id="unlock", tooltip="Enter the password"),
        Binding("q", "app.quit", "Quit", id="quit"),
        *COMPARE_BINDINGS,  # m, D, f: comparing and searching backups (tui/screens/compare.py)
    ]

    def __init__(self) -> None:
        super().__init__(id="main")
        self.project_id: str | None = None
        self._signature: dict[str, str] | None = None
        self._want_info = False
        self._listed = False
        #: Project summaries as last read, and what is to be read again.
        self._summaries: dict[str, ProjectSummary] = {}
        self._stale_all = False
        self._stale_projects: set[str] = set()
        #: A project to select once the list holds it (one this app just created).
        self.select_when_loaded: str | None = None
        #: A backup to highlight once the table holds it (one this app just made).
        self.select_backup_when_loaded: str | None = None

    def compose(self) -> ComposeResult:
        if self.app.read_only:
            yield Static(
                f"Read-only repository ({self.app.read_only}): browse and restore only.",
                id="read-only",
            )
        with Horizontal(id="top"):
            yield ProjectList(self.app.mgr.repository_url, id="projects")
            with Vertical(id="table-area"):
                yield FilterBar(id="filter-bar")
                yield BackupTable(id="backups")
        with Horizontal(id="bottom"):
            yield DetailView(id="detail")
            yield LogTail(self.app.log_path, self.app.earlier_log, id="log")
        yield ProgressPanel(id="progress")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(FilterBar).display = False
        self.query_one(BackupTable).focus()
        self._apply_size(self.app.size.width)
        self.load_projects()
        self.set_interval(self.app.poll_interval, self.poll_repository, name="repo-poll")
        self.set_interval(AGE_TICK, self.tick_ages, name="age-tick")

    def tick_ages(self) -> None:
        """'just now' becomes '1 minute ago' without the repository changing."""
        now = self.app.now()
        self.table.tick(now)
        self.projects.tick(now)
        self.detail.tick(now)

    # -- widgets

    @property
    def table(self) -> BackupTable:
        return self.query_one(BackupTable)

    @property
    def projects(self) -> ProjectList:
        return self.query_one(ProjectList)

    @property
    def detail(self) -> DetailView:
        return self.query_one(DetailView)

    @property
    def log_tail(self) -> LogTail:
        return self.query_one(LogTail)

    @property
    def current_backup(self) -> BackupMetadata | None:
        return self.table.current

    @property
    def current_project(self) -> ProjectSummary | None:
        return self.projects.summary(self.project_id)

    def detail_source(self, backup: BackupMetadata) -> str | None:
        """The directory a backup was taken of: its manifest's source, else the project's."""
        info = self.detail.info
        if info and info.metadata.id == backup.id and info.manifest and info.manifest.source:
            return info.manifest.source
        project = self.current_project
        return project.data_dir if project else None

    # -- loading (workers post messages; they never touch widgets)

    def load_projects(self, only: Collection[str] | None = None) -> None:
        """Refresh the summaries of `only` these projects (those that changed), or of all.
        A summary reads every metadata file of its project: with 10,000 backups a full
        reload is 0.3 s of work, one project's a few ms."""
        if only is None:
            self._stale_all = True
        else:
            self._stale_projects.update(only)
        if not any(not w.is_finished for w in self.workers if w.group == "load-projects"):
            self._load_projects()

    @work(group="load-projects", exit_on_error=False, description="loading projects")
    async def _load_projects(self) -> None:
        """Runs until nothing is stale: what goes stale meanwhile is picked up by the loop."""
        if not self._listed:
            # the names first (one directory listing), so the first project's table can load
            # while the figures of every project (which read all their metadata) are counted
            self._listed = True
            names = await self.app.mgr.project_ids()
            self.post_message(ProjectsLoaded([ProjectSummary(project_id=n) for n in names], True))
        mgr = self.app.mgr
        while self._stale_all or self._stale_projects:
            if self._stale_all:
                self._stale_all = False
                self._stale_projects.clear()
                self._summaries = {p.project_id: p for p in await mgr.projects()}
            else:
                only, self._stale_projects = self._stale_projects, set()
                fresh = {p.project_id: p for p in await mgr.projects(only=only)}
                for name in only - fresh.keys():  # deleted meanwhile
                    self._summaries.pop(name, None)
                self._summaries.update(fresh)
            summaries = [self._summaries[name] for name in sorted(self._summaries)]
            self.post_message(ProjectsLoaded(summaries))

    @work(group="load-backups", exclusive=True, exit_on_error=False, description="loading backups")
    async def load_backups(self, project_id: str, ask: bool = False) -> None:
        """`ask`: the project was just opened, so a locked one has its password asked for."""
        try:
            backups = await self.app.mgr.list(project_id)
        except NotFound:  # the project went away meanwhile: the project list will say so
            backups = []
        except WrongPassword:  # encrypted, and no password of this session opens it
            self.post_message(ProjectLocked(project_id, ask))
            backups = []
        self.post_message(BackupsLoaded(project_id, backups))

    @work(group="load-info", exclusive=True, exit_on_error=False, description="loading details")
    async def load_info(self, project_id: str, backup_id: str, delay: float = INFO_DELAY) -> None:
        await asyncio.sleep(delay)  # debounce: scrolling through rows cancels the earlier fetch
        try:
            info = await self.app.mgr.info(project_id, backup_id)
        except NotFound:
            return  # deleted meanwhile (maybe by another process): a reload follows
        self.post_message(BackupInfoLoaded(project_id, info))

    @work(group="repo-poll", exclusive=True, thread=True, exit_on_error=False)
    def _scan(self) -> None:
        sig = self.app.mgr.change_tokens_blocking()
        old = self._signature
        self._signature = sig
        if old is not None and sig != old:
            changed = {p for p in sig.keys() | old.keys() if sig.get(p) != old.get(p)}
            self.post_message(RepositoryChanged(frozenset(changed)))

    def poll_repository(self) -> None:
        if not any(w.is_running for w in self.workers if w.group == "repo-poll"):
            self._scan()

    def reload(self, *, info: bool = True, project_id: str | None = None) -> None:
        """Reload the projects (`project_id` alone: the one an operation of this app
        changed) and the current table."""
        self._want_info = self._want_info or info
        self.load_projects(None if project_id is None else {project_id})
        if self.project_id:
            self.load_backups(self.project_id)
        self.log_tail.poll_now()

    # -- message handlers

    def on_projects_loaded(self, message: ProjectsLoaded) -> None:
        self.app.locked.update(p.project_id for p in message.projects if p.locked)
        self.projects.set_projects(message.projects, self.app.now(), partial=message.partial)
        if message.partial:
            return
        wanted = self.select_when_loaded
        if wanted and any(p.project_id == wanted for p in message.projects):
            self.select_when_loaded = None
            self.projects.select_project(wanted)
        if not message.projects:
            self.app.call_after_refresh(self.app.settle_heap)  # the first screenful
            self.table.show(None, [], self.app.now())
            self.detail.show(None, None, self.app.now(), hint=self._empty_hint())
            self.query_one("#table-area").border_subtitle = "no projects yet · N: new project"

    def on_project_list_selected(self, message: ProjectList.Selected) -> None:
        if message.project_id == self.project_id:
            return
        self.project_id = message.project_id
        self.log_tail.follow(message.project_id)
        if message.project_id:
            self.load_backups(message.project_id, ask=True)
        else:
            self.table.show(None, [], self.app.now())

    def on_project_locked(self, message: ProjectLocked) -> None:
        self.app.locked.add(message.project_id)
        if message.project_id != self.project_id:
            return
        self.detail.show(None, None, self.app.now(), hint=self._empty_hint())
        if message.ask and self.app.screen is self:
            self.app.unlock(message.project_id)

    def on_backups_loaded(self, message: BackupsLoaded) -> None:
        if message.project_id != self.project_id:
            return
        self.table.show(message.project_id, message.backups, self.app.now())
        # the first screenful is drawn before the collection's pause, not after it
        self.app.call_after_refresh(self.app.settle_heap)
        wanted = self.select_backup_when_loaded
        if wanted and self.table.find(wanted) is not None:
            self.select_backup_when_loaded = None
            self.table.select_backup(wanted)
        current = self.current_backup
        want, self._want_info = self._want_info, False
        shown = self.detail.meta
        same = current is not None and shown is not None and current.id == shown.id
        if same and (want or current != shown):  # changed on disk, or an operation of ours ended
            self.load_info(message.project_id, current.id, 0)

    def on_backup_table_highlighted(self, message: BackupTable.Highlighted) -> None:
        backup = message.backup
        keep_info = (
            self.detail.info
            if backup is not None
            and self.detail.meta is not None
            and backup.id == self.detail.meta.id
            else None
        )
        hint = self._empty_hint() if backup is None else None
        self.detail.show(backup, keep_info, self.app.now(), hint=hint)
        if backup is not None and self.project_id:
            self.load_info(self.project_id, backup.id)

    def _empty_hint(self) -> str:
        """What a person looking at an empty table can do next."""
        project = self.current_project
        if project is None:
            if not self.projects.projects and self.app.read_only:
                return "No projects in this read-only repository."
            if not self.projects.projects:
                return "No projects yet.\nPress N to make one from a directory, n to back it up."
            return "Select a project."
        if self.app.is_locked(project.project_id):
            return f"{project.project_id} is encrypted and locked.\nPress u to enter its password."
        if not self.table.backups:
            where = f" {project.data_dir}" if project.data_dir else ""
            return f"No backups of {project.project_id} yet.\nPress n to back up{where}."
        return "No backup matches the filter.\nPress escape to clear it."

    def on_backup_info_loaded(self, message: BackupInfoLoaded) -> None:
        current = self.current_backup
        if (
            message.project_id == self.project_id
            and current
            and current.id == message.info.metadata.id
        ):
            self.detail.show(message.info.metadata, message.info, self.app.now())

    def on_repository_changed(self, message: RepositoryChanged) -> None:
        self.load_projects(message.project_ids or None)
        if self.project_id and (not message.project_ids or self.project_id in message.project_ids):
            self.load_backups(self.project_id)

    @on(FilterChanged)
    def _filter_changed(self, message: FilterChanged) -> None:
        flt = parse_filter(message.text, self.app.now())
        if not awaiting_value(message.text):
            # a key typed before its value (`status:`) leaves the table as it was, rather
            # than bringing every row back for one keystroke
            self.table.set_filter(flt)
        self.query_one(FilterBar).show_result(flt)

    # -- layout: wide shows detail and log side by side, narrow one at a time

    def on_resize(self, event: Resize) -> None:
        self._apply_size(event.size.width)

    def _apply_size(self, width: int) -> None:
        self.set_class(width < NARROW_WIDTH, "narrow")
        self.call_after_refresh(self._lift_toasts)

    def _lift_toasts(self) -> None:
        """Toasts sit just above the detail and log panes, over the table's last rows: not
        over the newest log lines, where what they announce is being written."""
        bottom = self.query_one("#bottom").region
        for rack in self.query_children("#textual-toastrack"):  # none without notifications
            if bottom.height:
                rack.styles.margin = (0, 0, max(0, self.size.height - bottom.y), 0)

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        if event.widget.id in ("detail", "log"):
            self.set_class(event.widget.id == "log", "-show-log")

    # -- actions of this screen

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def action_clear_filter(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.input.value or bar.display:
            bar.action_clear()

    def action_focus_pane(self, pane: str) -> None:
        if pane in ("detail", "log"):
            self.set_class(pane == "log", "-show-log")
        # at once, not after the refresh `focus()` waits for: the keys that came in the same
        # read (`2` then `Down`, as SSH delivers a burst) must reach the new pane
        self.set_focus(self.query_one(f"#{pane}"))

    def action_reload(self) -> None:
        self.reload()

    def action_unlock(self) -> None:
        if not self.project_id:
            return
        if not self.app.is_locked(self.project_id):
            self.notify(f"{self.project_id} is open (plain, or unlocked this session).")
            return
        self.app.unlock(self.project_id)
