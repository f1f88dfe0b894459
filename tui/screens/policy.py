"""A project's retention policy: edit its rules and see, as you type, which backups it keeps
(with the reason) and which it removes, and what that would free; apply it with one
confirmation that names the count. Its last row is the schedule (issue 14): when `run-due`
backs the project up, with the next five run times below it as they are typed.

The marks are `core.retention.evaluate` over the project's backups, the very function
`forget` runs, so the preview cannot disagree with what happens. The space freed comes from
the engine's dry run, a moment after typing stops. Rules the form does not show (the
`within-daily` family) are kept as they are stored.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from pydantic import ValidationError
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Label, Static

from core import schedule as sched
from core.errors import NexusError
from core.models import BackupMetadata
from core.retention import Decision, Policy, evaluate
from tui import format as fmt
from tui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from tui.app import NexusApp

#: The form's fields: (Policy field, label, width, placeholder).
FIELDS: list[list[tuple[str, str, int, str]]] = [
    [
        ("keep_last", "last", 4, "-"),
        ("keep_hourly", "hourly", 4, "-"),
        ("keep_daily", "daily", 4, "-"),
        ("keep_weekly", "weekly", 4, "-"),
        ("keep_monthly", "monthly", 4, "-"),
        ("keep_yearly", "yearly", 4, "-"),
    ],
    [
        ("keep_within", "within", 8, "30d"),
        ("keep_checkpoints", "checkpoints", 8, "3 or 7d"),
        ("grace_hours", "grace hours", 4, "24"),
    ],
    [
        ("keep_tags", "tags", 40, "env=prod, nightly"),
    ],
    [
        ("schedule", "schedule", 26, "daily 03:00 or 0 3 * * *"),
        ("schedule_delay", "random delay", 6, "30m"),
    ],
]
COUNTS = {"keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"}
#: Seconds without typing before the engine is asked what the policy would free.
SPACE_DELAY = 0.4


def form_values(policy: Policy | None) -> dict[str, str]:
    """What each field shows for a stored policy (empty for a rule that is off)."""
    if policy is None:
        return {}
    out = {}
    for name in COUNTS:
        value = getattr(policy, name)
        out[name] = str(value) if value else ""
    out["keep_within"] = policy.keep_within or ""
    out["keep_tags"] = ", ".join(policy.keep_tags)
    out["keep_checkpoints"] = policy.keep_checkpoints or ""
    out["grace_hours"] = str(policy.grace_hours)
    out["schedule"] = policy.schedule or ""
    out["schedule_delay"] = (
        sched.format_delay(policy.schedule_delay) if policy.schedule_delay else ""
    )
    return out


def next_runs_text(policy: Policy | None, project_id: str, now: datetime) -> str:
    """The next five scheduled runs (UTC, their random delay included), on one line."""
    if policy is None or policy.schedule is None:
        return "No schedule: run-due never backs it up (e.g. daily 03:00, Mon..Fri 02:30)."
    try:
        parsed = sched.parse(policy.schedule)
    except sched.ScheduleError:
        return ""
    times = sched.next_due_times(parsed, project_id, now, policy.schedule_delay)
    return "next (UTC): " + "  ".join(f"{t:%m-%d %H:%M}" for t in times)


def policy_from(values: dict[str, str], base: Policy | None) -> Policy:
    """The policy the fields say (on top of `base`'s rules the form does not show); raises
    ValueError with one line naming the field."""
    data = base.model_dump() if base is not None else {}
    for name in COUNTS:
        text = values.get(name, "").strip()
        if text and not text.isdigit():
            raise ValueError(f"{name.removeprefix('keep_')}: a whole number, or empty")
        data[name] = int(text) if text else 0
    for name in ("keep_within", "keep_checkpoints"):
        data[name] = values.get(name, "").strip() or None
    data["keep_tags"] = [t.strip() for t in values.get("keep_tags", "").split(",") if t.strip()]
    grace = values.get("grace_hours", "").strip()
    if grace and not grace.isdigit():
        raise ValueError("grace h: hours as a whole number")
    data["grace_hours"] = int(grace) if grace else 24
    data["schedule"] = values.get("schedule", "").strip() or None
    delay = values.get("schedule_delay", "").strip()
    try:
        data["schedule_delay"] = sched.parse_delay(delay) if delay else 0
    except sched.ScheduleError as exc:
        raise ValueError(f"random delay: {exc}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]).removeprefix("keep_") if first["loc"] else "policy"
        raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


class PolicyScreen(ModalScreen[None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="policy.close"),
        Binding("ctrl+s", "apply", "Save and apply", id="policy.apply"),
        Binding("ctrl+x", "clear", "Clear policy", id="policy.clear"),
    ]

    def __init__(
        self, project_id: str, stored: Policy | None, backups: list[BackupMetadata]
    ) -> None:
        super().__init__()
        self.project_id = project_id
        self.stored = stored
        self.backups = backups
        self.policy: Policy | None = None  # what the fields say, when they say something valid
        self.decisions: list[Decision] = []
        self.summary = ""
        self._space_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form policy"):
            for row in FIELDS:
                with Horizontal(classes="policy-row"):
                    for name, label, width, placeholder in row:
                        yield Label(label, classes="policy-label")
                        field = Input(
                            placeholder=placeholder, id=f"f-{name}", compact=True, classes="rule"
                        )
                        field.styles.width = width
                        yield field
            yield Label("", id="policy-runs", classes="field-help runs")
            yield Label("", id="policy-help", classes="field-help", markup=False)
            yield DataTable(id="policy-preview", cursor_type="row", zebra_stripes=False)
            yield Static("", id="policy-summary", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Save and apply (ctrl+s)", id="apply", variant="primary", compact=True)
                yield Button("Clear policy (ctrl+x)", id="clear", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Retention · {self.project_id}"
        table = self.query_one("#policy-preview", DataTable)
        table.add_column("", key="mark", width=6)
        table.add_column("backup", key="id", width=22)
        table.add_column("age", key="age", width=12)
        table.add_column("why", key="why")
        for name, value in form_values(self.stored).items():
            field = self.query_one(f"#f-{name}", Input)
            with field.prevent(Input.Changed):
                field.value = value
        for field in self.query(Input):
            field.cursor_blink = self.app.cursor_blink
        self.query_one("#f-keep_last", Input).focus()
        self._refresh()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._refresh()

    def _values(self) -> dict[str, str]:
        return {f.id.removeprefix("f-"): f.value for f in self.query(Input) if f.id}

    def _say(self, text: str, *, bad: bool = False) -> None:
        label = self.query_one("#policy-help", Label)
        label.update(text)
        label.set_class(bad, "-bad")

    def _refresh(self) -> None:
        """Mark every backup kept or removed by what the fields say now."""
        table = self.query_one("#policy-preview", DataTable)
        table.clear()
        self.policy, self.decisions = None, []
        summary = self.query_one("#policy-summary", Static)
        runs = self.query_one("#policy-runs", Label)
        try:
            policy = policy_from(self._values(), self.stored)
            runs.update(next_runs_text(policy, self.project_id, self.app.now()))
            if not policy.retains():  # a schedule alone: nothing is removed
                if policy.blank():
                    raise ValueError("no rule")
                self.policy, self.decisions = policy, []
                self._say("No retention rule: every backup is kept (the schedule is saved).")
                now = self.app.now()
                for m in self.backups:
                    table.add_row(
                        Text("keep", style="green"),
                        m.id,
                        fmt.age(m.created_at, now),
                        "no retention rule",
                        key=m.id,
                    )
                summary.update("keeps every backup")
                return
            decisions = evaluate(self.backups, policy, now=self.app.now())
        except (ValueError, NexusError) as exc:
            self._say(f"✗ {exc}", bad=bool(self._values_given()))
            summary.update("")
            if not self._values_given():
                self._say("No policy: every backup is kept. Type a rule (e.g. daily 7).")
            return
        self.policy, self.decisions = policy, decisions
        self._say("restic's rules: a backup is kept when any rule keeps it (UTC periods)")
        now = self.app.now()
        for d in decisions:
            mark = Text("keep", style="green") if d.keep else Text("REMOVE", style="bold red")
            table.add_row(
                mark, d.backup_id, fmt.age(d.created_at, now), ", ".join(d.reasons), key=d.backup_id
            )
        removes = sum(1 for d in decisions if not d.keep)
        self.summary = f"keeps {len(decisions) - removes} · removes {removes}"
        if removes and policy.grace_hours:
            self.summary += f" (restorable {policy.grace_hours} h, then freed)"
        elif removes:  # no grace: forget deletes them at once (`_forget_plan`'s purge)
            self.summary += " (deleted for good: no grace period)"
        summary.update(self.summary)
        self._schedule_space()

    def _values_given(self) -> bool:
        return any(v.strip() for k, v in self._values().items() if k != "grace_hours")

    def _schedule_space(self) -> None:
        if self._space_timer is not None:
            self._space_timer.stop()
        if self.policy is None or all(d.keep for d in self.decisions):
            return
        self._space_timer = self.set_timer(SPACE_DELAY, self._ask_space)

    def _ask_space(self) -> None:
        if self.policy is not None:
            self._space(self.policy)

    @work(exclusive=True, group="policy-space")
    async def _space(self, policy: Policy) -> None:
        with contextlib.suppress(NexusError, OSError):
            result = await self.app.mgr.forget(self.project_id, policy, dry_run=True)
            # the estimate may come back after the screen was closed: nothing left to update
            # (a query then raised NoMatches, and the worker's error ended the app)
            if not self.is_attached:
                return
            if self.policy == policy and result.bytes_freed is not None:
                self.query_one("#policy-summary", Static).update(
                    f"{self.summary} · frees {fmt.size(result.bytes_freed)}"
                )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {"apply": self.action_apply, "clear": self.action_clear}.get(
            event.button.id or "", self.action_close
        )()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_apply(self) -> None:
        if self.app.refuse_write("apply a retention policy"):
            return
        policy = self.policy
        if policy is None:  # the help line already says what is wrong
            self.app.bell()
            return
        removes = [d.backup_id for d in self.decisions if not d.keep]
        body = (
            f"Save this policy for {self.project_id} and remove "
            f"{fmt.plural(len(removes), 'backup')} now?\n\n"
            f"They stay restorable for {policy.grace_hours} h (undelete brings one back); "
            "their space is freed after that. The policy is applied after every backup."
            if removes and policy.grace_hours
            # with no grace, forget deletes them at once: nothing is left to undelete
            else f"Save this policy for {self.project_id} and delete "
            f"{fmt.plural(len(removes), 'backup')} for good now?\n\n"
            "The grace period is 0 h: their space is freed at once and nothing brings them "
            "back. The policy is applied after every backup."
            if removes
            else f"Save this policy for {self.project_id}? It removes no backup now, and is "
            "applied after every backup."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.start_forget(self.project_id, policy, removes)
                self.dismiss(None)

        self.app.push_screen(
            ConfirmScreen("Apply retention", body, yes="Apply", danger=bool(removes)), answered
        )

    def action_clear(self) -> None:
        if self.app.refuse_write("clear a retention policy"):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.start_forget(self.project_id, None)
                self.dismiss(None)

        self.app.push_screen(
            ConfirmScreen(
                "Clear retention",
                f"Clear {self.project_id}'s policy? No backup is removed; retention stops.",
                yes="Clear",
            ),
            answered,
        )
