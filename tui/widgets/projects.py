"""The projects pane: one two-line entry per project, a failed last backup in red; its
border says how many there are and where their repositories live."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from core.models import BackupStatus, ProjectSummary
from tui import format as fmt


def _line(left: Text, right: Text, width: int) -> Text:
    """`left` and `right` on one line of `width` cells, `left` cut with an ellipsis."""
    room = max(1, width - right.cell_len - 1)
    if left.cell_len > room:
        left.truncate(room - 1)
        left.append("…")
    left.pad_right(width - left.cell_len - right.cell_len)
    return left + right


def project_prompt(
    project: ProjectSummary, now: datetime, width: int = 26, *, partial: bool = False
) -> Text:
    """Line 1: name and age of the last backup; line 2: the number of backups; line 3 what
    they take in the repository, labelled "stored" and in the table's units, so it is not
    read as the backups' size (the table's, before dedup and compression); a project whose
    last backup failed, or that cannot be read (its config.json damaged), is red, marked ✗
    and says so on a line of its own.
    Plain Text laid out here: a list of Rich tables costs far more to render."""
    failed = project.last_status == BackupStatus.FAILED or bool(project.unreadable)
    name = Text()
    if failed:
        name.append("✗ ", style="bold red")
    name.append(project.project_id, style="bold red" if failed else "bold")
    if partial:  # the name only, until the figures are counted
        return _line(name, Text(""), width) + Text("\n…", style="dim")
    if project.locked:  # its figures are sealed until its password is given
        return _line(name, Text(""), width) + Text("\nencrypted · locked", style="yellow")
    age = Text(fmt.short_age(project.last_backup_at, now), style="dim")
    count = Text(f"{project.backups} backup{'s' if project.backups != 1 else ''}", style="dim")
    text = _line(name, age, width) + Text("\n") + _line(count, Text(""), width)
    if project.backups:
        stored = Text(f"{fmt.size(project.stored_bytes)} stored", style="dim")
        text += Text("\n") + _line(stored, Text(""), width)
    if project.unreadable:  # its backups list, but none restores: said, never shown healthy
        text.append("\ncannot be read", style="red")
    elif failed:
        text.append("\nlast backup failed", style="red")
    if project.schedule is not None:
        text.append("\n")
        text.append_text(schedule_text(project, now))
    return text


def _until(when: datetime, now: datetime) -> str:
    seconds = (when - now).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {int(seconds // size)}{unit}"
    return "in <1m"


def schedule_text(project: ProjectSummary, now: datetime) -> Text:
    """A scheduled project's line: overdue (a missed schedule, as loud as a failed backup),
    due now, or when the next run is; a failed last scheduled run says so."""
    if project.overdue:
        return Text("✗ schedule overdue", style="bold red")
    last = project.last_run
    if last is not None and last.status == "failed":
        return Text("✗ scheduled run failed", style="red")
    if project.next_run is None:
        return Text("scheduled", style="dim")
    if project.next_run <= now:
        return Text("scheduled run due now", style="yellow")
    return Text(f"next run {_until(project.next_run, now)}", style="dim")


class ProjectList(OptionList):
    """Every project of the root; the highlighted one drives the rest of the screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False, id="projects.down"),
        Binding("k", "cursor_up", "Up", show=False, id="projects.up"),
        Binding("g", "first", "First", show=False, id="projects.first"),
        Binding("G", "last", "Last", show=False, id="projects.last"),
    ]

    class Selected(Message):
        def __init__(self, project_id: str | None) -> None:
            super().__init__()
            self.project_id = project_id

    def __init__(self, where: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        #: Where the repositories live (the manager's repository_url), shortened to fit.
        self.where = where
        if where:
            self.tooltip = f"Repositories in {where}"
        self.projects: list[ProjectSummary] = []
        self._key: tuple[list[tuple[ProjectSummary, str]], int] | None = None
        self._last: tuple[datetime, bool] | None = None
        self.border_title = "Projects"

    @property
    def current(self) -> str | None:
        if self.highlighted is None or not self.projects:
            return None
        option = self.get_option_at_index(self.highlighted)
        return option.id

    def set_projects(
        self, projects: list[ProjectSummary], now: datetime, *, partial: bool = False
    ) -> None:
        """Replace the list, keeping the highlighted project where it still exists."""
        keep = self.current
        projects = sorted(projects, key=lambda p: p.project_id)
        width = max(12, self.scrollable_content_region.width - 2)
        key = [(p, "…" if partial else fmt.short_age(p.last_backup_at, now)) for p in projects]
        if (key, width) == self._key and self.option_count == len(projects):
            return  # nothing visible changed: spare the list a rebuild
        self._key = (key, width)
        self._last = (now, partial)
        prompts = [project_prompt(p, now, width, partial=partial) for p in projects]
        self.projects = projects
        with self.prevent(OptionList.OptionHighlighted):
            self.clear_options()
            self.add_options(
                Option(prompt, id=p.project_id)
                for p, prompt in zip(self.projects, prompts, strict=True)
            )
            ids = [p.project_id for p in self.projects]
            if ids:
                self.highlighted = ids.index(keep) if keep in ids else 0
        self._subtitle()
        if self.current != keep:
            self.post_message(self.Selected(self.current))

    def tick(self, now: datetime) -> None:
        """Let the ages move on: the list is laid out again only when one of them changed."""
        if self._last is not None and not self._last[1]:
            self.set_projects(self.projects, now)

    def _subtitle(self) -> None:
        """The count in the title, and in the bottom border where the repositories live,
        shortened to what the border leaves ('…/share/nexus-backup')."""
        self.border_title = f"Projects ({len(self.projects)})"
        room = self.outer_size.width - 7  # corners, spaces and a little rule
        # Text: a str border title is markup, and a root may hold `[b]` or `x[/]y` (I14)
        self.border_subtitle = Text(fmt.short_location(self.where, room)) if room >= 6 else ""

    def on_resize(self) -> None:
        if self._last is not None:  # lay the lines out again for the new width
            now, partial = self._last
            self.set_projects(self.projects, now, partial=partial)
        self._subtitle()

    def select_project(self, project_id: str) -> None:
        ids = [p.project_id for p in self.projects]
        if project_id in ids:
            self.highlighted = ids.index(project_id)

    def summary(self, project_id: str | None) -> ProjectSummary | None:
        return next((p for p in self.projects if p.project_id == project_id), None)

    def _on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self.post_message(self.Selected(event.option.id))
