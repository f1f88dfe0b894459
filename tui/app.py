"""nexus-backup's TUI: a keyboard-driven cockpit over the async core manager.

The app owns the manager, the running operations (each a Textual worker that awaits the core
and posts typed messages) and the one place that turns errors into a notification plus a log
line. Screens ask the app to start operations and follow them through `operations_changed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.notifications import SeverityLevel
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from core.errors import NexusError, WrongPassword, describe_os_error
from core.logger import LogRecord
from core.models import (
    BackupMetadata,
    BackupType,
    CopyResult,
    CreateRequest,
    DeleteResult,
    ProgressEvent,
    ProjectDeleteResult,
    ProjectSummary,
    RestoreRequest,
    RestoreResult,
    VerifyResult,
)
from core.retention import ForgetResult, Policy
from core.service import Engine
from tui import format as fmt
from tui.commands import NexusCommands
from tui.messages import (
    OperationCreated,
    OperationFinished,
    OperationProgress,
)
from tui.operations import Operation, Operations
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.screens.pick import PickScreen


def describe_error(error: BaseException) -> str:
    """The one line a person sees for an error."""
    if isinstance(error, NexusError):
        return str(error) or type(error).__name__
    if isinstance(error, OSError):
        return describe_os_error(error)
    return f"unexpected error: {type(error).__name__}: {error}"


class NexusApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "nexus-backup"
    COMMANDS = App.COMMANDS | {NexusCommands}
    NOTIFICATION_TIMEOUT = 8
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "toggle_keys", "Keys", show=False, id="keys"),
    ]

    def __init__(
        self,
        root: Path | str,
        *,
        clock: Callable[[], datetime] | None = None,
        manager: Engine | None = None,
        poll_interval: float = 2.0,
        blink: bool | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.poll_interval = poll_interval
        self._manager: Engine | None = manager
        self._blink = blink
        self.operations = Operations()
        self.operations_changed: Signal[Operation] = Signal(self, "operations_changed")
        #: Data directory last used per project in this session (the core remembers one too).
        self.data_dirs: dict[str, str] = {}
        #: Copy target last used per project in this session (the engine keeps no setting
        #: for it yet), offered again by the next copy of that project.
        self.copy_targets: dict[str, str] = {}
        #: Passwords of the encrypted projects opened this session: in memory only.
        self.passwords: dict[str, str] = {}
        #: A copy target's password per project, typed in the copy form (none: the
        #: project's own, which opens a copy made from it).
        self.target_passwords: dict[str, str] = {}
        #: Encrypted projects seen locked (no password of this session opens them).
        self.locked: set[str] = set()
        self.main = MainScreen()
        self._heap_settled = False
        #: Why the repository cannot be written, or None: backing up, deleting and new
        #: projects are then refused with that reason (browsing and restoring go on).
        self.read_only: str | None = self.mgr.read_only_reason()
        if self.read_only:
            self.sub_title = f"read-only repository ({self.read_only})"

    # -- services for screens

    @property
    def mgr(self) -> Engine:
        """The core manager, made on first use."""
        if self._manager is None:
            from core.manager import BackupManager

            self._manager = BackupManager(
                self.root,
                password=self.password_for,
                to_password=self.target_password_for,
                clock=self.clock,  # a fixed clock (tests, screenshots) is the engine's too
            )
        return self._manager

    # -- encrypted projects: asked before an operation starts, never from a worker

    def password_for(self, project_id: str) -> str:
        """The manager's `password`, called from its worker threads: the password this
        session opened the project with (the same one opens a copy of it), else
        WrongPassword at once. Never a prompt: a person is asked by `unlock`, before."""
        known = self.passwords.get(project_id)
        if known is None:
            raise WrongPassword(
                f"project {project_id!r} is encrypted and locked: select it and enter its "
                "password (u)"
            )
        return known

    def target_password_for(self, project_id: str) -> str:
        """The password of a copy's target: the one typed in the copy form, else the
        project's own."""
        return self.target_passwords.get(project_id) or self.password_for(project_id)

    def is_locked(self, project_id: str) -> bool:
        return project_id in self.locked and project_id not in self.passwords

    def unlock(self, project_id: str, then: Callable[[], None] | None = None) -> None:
        """Ask for the project's password (the dialog tries it, and asks again when it is
        wrong); once it opens, remember it for the session, reload, then run `then`."""
        from tui.screens.password import PasswordScreen

        if any(isinstance(s, PasswordScreen) for s in self.screen_stack):
            return  # one question at a time

        def answered(password: str | None) -> None:
            if password is None:
                return
            self.passwords[project_id] = password
            self.locked.discard(project_id)
            self.main.reload(project_id=project_id)
            self.notify(f"{project_id} unlocked for this session.", title="Unlocked")
            if then is not None:
                then()

        self.push_screen(PasswordScreen(project_id), answered)

    @property
    def cursor_blink(self) -> bool:
        """No blinking cursor headless (tests, screenshots), so snapshots are stable."""
        return (not self.is_headless) if self._blink is None else self._blink

    def now(self) -> datetime:
        return self.clock()

    def log_path(self, project_id: str | None) -> Path | None:
        if not project_id:
            return None
        return self.mgr.logger.path_for(project_id, self.now())

    def earlier_log(self, project_id: str) -> list[LogRecord]:
        """The day before's last records of the project, shown above today's."""
        from tui.widgets.log_tail import EARLIER_LINES

        day = (self.now() - timedelta(days=1)).date()
        return self.mgr.logger.read(project_id, day, limit=EARLIER_LINES)

    def get_default_screen(self) -> MainScreen:
        return self.main

    def settle_heap(self) -> None:
        """Once, when the first screenful is loaded: collect, then freeze what is left.

        A full garbage collection walks every tracked object; with Textual, the stylesheet
        and a repository's metadata that is 100,000 of them and a 50-100 ms pause, taken at
        random moments (the stalls a keystroke felt while a log grew or a backup ran).
        Frozen, the startup heap (modules, widgets, styles) is skipped by every later
        collection, so a pause scales with what the session allocates since. The cost is that
        a cycle among those startup objects is never freed: a bounded, one-time amount.
        """
        if self._heap_settled:
            return
        self._heap_settled = True
        gc.collect()
        gc.freeze()

    def on_mount(self) -> None:
        self._pin_console_size()

    def on_resize(self, event: events.Resize) -> None:
        self._pin_console_size(event.size)

    def _pin_console_size(self, size: Size | None = None) -> None:
        """Tell Rich's console the terminal's size, so that it stops asking the terminal.

        Unsized, the console queries the terminal (three ioctls) whenever it builds its
        options, which a DataTable does for every cell of every row it adds (widening a
        filtered table back to 2,000 rows: 350-560 ms unpinned, 310-400 ms pinned)."""
        size = size or self.size
        self.console.size = (size.width, size.height)

    def on_unmount(self) -> None:
        """Hand the frozen objects back to the collector (several apps in one process: tests)."""
        if self._heap_settled:
            gc.unfreeze()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast of the TUI (its screens' and widgets' `notify` come here): the message
        is shown as written, never read as markup, and on one rule with the rest (I14): a
        name in it (`a[b]`, `x[/]y`) reads as itself and a control character escaped
        (`fmt.clean`), so neither a file name nor an engine message styles, hides or breaks
        the toast. `markup` is accepted and ignored: no toast of this app is markup."""
        super().notify(
            fmt.clean(message), title=title, severity=severity, timeout=timeout, markup=False
        )

    # -- errors: the one place

    def report_error(
        self, error: BaseException, *, project_id: str | None = None, what: str | None = None
    ) -> None:
        """A notification and a log line; never a traceback, and the app stays usable."""
        line = describe_error(error)
        title = what.capitalize() if what else "Error"
        self.notify(line, title=f"{title} failed", severity="error")
        if project_id and not isinstance(error, NexusError):
            # the core logs its own failures; this covers everything else
            with contextlib.suppress(Exception):
                self.mgr.logger.error(project_id, "tui", f"{what or 'error'}: {line}")

    # -- operations

    def start_operation(
        self,
        op: Operation,
        factory: Callable[[Callable[[ProgressEvent], None]], Coroutine[Any, Any, Any]],
    ) -> Operation:
        """Run `factory(progress)` in a worker; its result arrives as OperationFinished."""
        self.operations.add(op)

        def progress(event: ProgressEvent) -> None:
            self.post_message(OperationProgress(op.id, event))

        async def run() -> None:
            result = await factory(progress)
            self.post_message(OperationFinished(op.id, result))

        op.worker = self.run_worker(
            run(), name=op.id, group="ops", description=op.label, exit_on_error=False
        )
        self.operations_changed.publish(op)
        return op

    def start_create(self, req: CreateRequest) -> Operation:
        self.data_dirs[req.project_id] = req.data_dir
        label = f"backup {req.project_id} ({req.backup_type.value})"
        op = Operation("create", req.project_id, label)

        def created(meta: BackupMetadata) -> None:
            self.post_message(OperationCreated(op.id, meta))

        return self.start_operation(
            op, lambda progress: self.mgr.create(req, progress=progress, on_created=created)
        )

    def start_restore(self, req: RestoreRequest) -> Operation:
        what = f"{len(req.paths)} paths of " if req.paths else ""
        label = f"restore {what}{req.project_id}/{req.backup_id}"
        op = Operation("restore", req.project_id, label, backup_id=req.backup_id)
        return self.start_operation(op, lambda progress: self.mgr.restore(req, progress=progress))

    def start_verify(self, project_id: str, backup_id: str, *, quick: bool = False) -> Operation:
        op = Operation("verify", project_id, f"verify {project_id}/{backup_id}", backup_id)
        return self.start_operation(
            op,
            lambda progress: self.mgr.verify(project_id, backup_id, quick=quick, progress=progress),
        )

    def start_delete(self, project_id: str, backup_id: str) -> Operation:
        op = Operation("delete", project_id, f"delete {project_id}/{backup_id}", backup_id)
        return self.start_operation(
            op, lambda progress: self.mgr.delete(project_id, backup_id, progress=progress)
        )

    def start_delete_project(self, project_id: str, backups: int) -> Operation:
        op = Operation("delete-project", project_id, f"delete project {project_id}")
        return self.start_operation(
            op, lambda _progress: self.mgr.delete_project(project_id, backups=backups)
        )

    def start_rename_project(self, project_id: str, new_id: str) -> Operation:
        op = Operation("rename-project", project_id, f"rename {project_id} → {new_id}")
        self.main.select_when_loaded = new_id
        return self.start_operation(
            op, lambda _progress: self.mgr.rename_project(project_id, new_id)
        )

    def start_copy(self, project_id: str, to: str) -> Operation:
        """Copy every completed backup of the project into the repository `to`."""
        self.copy_targets[project_id] = to
        label = f"copy {project_id} → {fmt.short_location(to, 40)}"
        op = Operation("copy", project_id, label)
        return self.start_operation(
            op, lambda progress: self.mgr.copy(project_id, to, progress=progress)
        )

    def start_forget(
        self, project_id: str, policy: Policy | None, removing: list[str] | None = None
    ) -> Operation:
        """Apply the project's policy now and store it (None: clear it, removing nothing).
        `removing`: the backups the confirmation named; should the policy now remove another
        (a backup made meanwhile), nothing is removed and the policy is not stored."""
        label = f"retention {project_id}" if policy is not None else f"clear policy {project_id}"
        op = Operation("forget", project_id, label)

        async def apply(progress: Callable[[ProgressEvent], None]) -> ForgetResult | None:
            if policy is None or not policy.retains():  # a schedule alone removes nothing
                await self.mgr.set_policy(project_id, policy)
                return None
            done = await self.mgr.forget(project_id, policy, progress=progress, removing=removing)
            await self.mgr.set_policy(project_id, policy)
            return done

        return self.start_operation(op, apply)

    def start_create_project(
        self, project_id: str, data_dir: str, *, password: str | None = None
    ) -> Operation:
        """A new project; with `password`, encrypted under it (kept for the session)."""
        self.data_dirs[project_id] = data_dir
        op = Operation("project", project_id, f"new project {project_id}")

        async def create(_progress: Callable[[ProgressEvent], None]) -> ProjectSummary:
            made = await self.mgr.create_project(project_id, data_dir, password=password)
            if password is not None:
                self.passwords[project_id] = password
            return made

        return self.start_operation(op, create)

    def on_operation_progress(self, message: OperationProgress) -> None:
        op = self.operations.get(message.op_id)
        if op is not None and op.running:
            op.progress = message.event
            if op.backup_id is None and message.event.backup_id:
                op.backup_id = message.event.backup_id
            self.operations_changed.publish(op)

    def on_operation_created(self, message: OperationCreated) -> None:
        op = self.operations.get(message.op_id)
        if op is not None:
            op.backup_id = message.metadata.id
            self.operations_changed.publish(op)
        self.main.reload(info=False, project_id=message.metadata.project_id)

    def on_operation_finished(self, message: OperationFinished) -> None:
        op = self.operations.get(message.op_id)
        if op is None:
            return
        op.state, op.result = "done", message.result
        self._announce_result(op)
        self._op_ended(op)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Operation workers end here when they fail or are cancelled."""
        op = self.operations.get(event.worker.name)
        if op is None:
            if event.state == WorkerState.ERROR and event.worker.error is not None:
                self.report_error(event.worker.error, what=event.worker.description)
            return
        if event.state == WorkerState.ERROR and op.running:
            error = event.worker.error or RuntimeError("unknown error")
            op.state, op.error = "failed", describe_error(error)
            self.report_error(error, project_id=op.project_id, what=op.label)
            self._op_ended(op)
        elif event.state == WorkerState.CANCELLED and op.running:
            op.state, op.error = "cancelled", "cancelled"
            self.notify(f"{op.label}: cancelled", title="Cancelled", severity="warning")
            self._op_ended(op)

    def _op_ended(self, op: Operation) -> None:
        self.operations_changed.publish(op)
        if op.kind == "project" and op.state == "done":
            self.main.select_when_loaded = op.project_id
        if op.kind == "create" and isinstance(op.result, BackupMetadata):
            self.main.select_backup_when_loaded = op.result.id  # show what was just made
        renamed = op.kind == "rename-project" and op.state == "done"
        self.main.reload(project_id=None if renamed else op.project_id)
        # keep the finished op around briefly for views that follow it, then forget it
        self.set_timer(30, lambda: self.operations.remove(op.id))

    def _announce_result(self, op: Operation) -> None:
        result = op.result
        if isinstance(result, BackupMetadata):
            skipped = len(result.stats.warnings)
            text = (
                f"{result.id}: {fmt.plural(result.files_count, 'file')}, "
                f"{fmt.size(result.size_bytes)}"
                f" ({fmt.size(result.stats.bytes_stored)} new) in "
                f"{fmt.duration(result.stats.duration_seconds)}"
            )
            if skipped:
                text += f"; {fmt.plural(skipped, 'file')} skipped (see detail)"
            self.notify(
                text, title="Backup completed", severity="warning" if skipped else "information"
            )
        elif isinstance(result, RestoreResult):
            text = (
                f"{fmt.plural(result.files_written, 'file')} written, "
                f"{result.files_unchanged:,} unchanged"
                f" into {fmt.path(result.restore_dir)}" + (" · verified" if result.verified else "")
            )
            if result.checkpoint_id:
                text += f" · checkpoint {result.checkpoint_id} taken first"
            if result.files_damaged:
                named = ", ".join(fmt.name(d.path) for d in result.damaged_files[:3])
                self.notify(
                    f"{text} · {fmt.plural(result.files_damaged, 'file')} not restored, "
                    f"damaged: {named}",
                    title="Restore: DAMAGED",
                    severity="error",
                )
            else:
                self.notify(text, title="Restore completed")
        elif isinstance(result, VerifyResult):
            if result.ok:
                self.notify(
                    f"{result.backup_id}: {fmt.plural(result.files_checked, 'file')}, "
                    f"{fmt.size(result.bytes_checked)} checked",
                    title="Verify: OK",
                )
            else:
                problems = [f"{fmt.name(d.path)}: {d.reason}" for d in result.damaged_files[:3]]
                problems += result.errors[:2]
                self.notify(
                    f"{result.backup_id}: " + "; ".join(problems or ["checksum mismatch"]),
                    title="Verify: DAMAGED",
                    severity="error",
                )
        elif isinstance(result, DeleteResult):
            self.notify(
                f"{result.backup_id} deleted, {fmt.size(result.bytes_reclaimed)} reclaimed",
                title="Deleted",
            )
        elif isinstance(result, ProjectDeleteResult):
            self.notify(
                f"{result.project_id}: {result.backups_text()}, "
                f"{fmt.size(result.bytes_deleted)} freed",
                title="Project deleted",
            )
        elif isinstance(result, ForgetResult):
            self.notify(f"{result.project_id}: {result.summary()}", title="Retention applied")
        elif op.kind == "forget":
            self.notify(f"{op.project_id}: no policy; every backup is kept", title="Policy cleared")
        elif isinstance(result, ProjectSummary) and op.kind == "rename-project":
            self.notify(f"{op.project_id} → {result.project_id}", title="Project renamed")
        elif isinstance(result, ProjectSummary):
            self.notify(
                f"{result.project_id} → {fmt.path(result.data_dir)}", title="Project created"
            )
        elif isinstance(result, CopyResult):
            from tui.screens.copy import copy_summary

            self.notify(
                f"{result.project_id} → {fmt.path(result.target)}: {copy_summary(result)}",
                title="Copy completed",
            )

    # -- actions (footer keys on the main screen, and the command palette)

    def refuse_write(self, what: str) -> bool:
        """The one check of every action that writes the repository: on a read-only one it
        says why `what` cannot run, instead of failing half-way."""
        if not self.read_only:
            return False
        self.notify(
            f"Cannot {what}: the repository {self.root} is read-only ({self.read_only}). "
            "You can browse and restore its backups.",
            title="Read-only repository",
            severity="warning",
        )
        return True

    def _selected(self, *, restorable: str | None = None) -> BackupMetadata | None:
        """The highlighted backup; with `restorable` (what the action does: "restored",
        "browsed", "verified"), only a completed one, else a warning says why not."""
        if self.screen is not self.main:
            return None
        backup = self.main.current_backup
        if backup is None:
            self.notify("Select a backup first.", severity="warning")
            return None
        if restorable and not backup.restorable:
            self.notify(
                f"{backup.id} {backup.status.value}: only a completed backup can be {restorable}.",
                severity="warning",
            )
            return None
        return backup

    def action_new_backup(self) -> None:
        from tui.screens.new_backup import NewBackupScreen

        if self.refuse_write("back up"):
            return
        project = self.main.current_project if self.screen is self.main else None
        if project is None:
            self.notify("Create or select a project first (N).", severity="warning")
            return
        if self.is_locked(project.project_id):
            self.unlock(project.project_id, then=self.action_new_backup)
            return
        # the directory the project remembers; backing up another one is confirmed first
        remembered = project.data_dir or self.data_dirs.get(project.project_id)
        # on top of an existing backup, incremental is what one usually wants
        has_base = any(b.restorable for b in self.main.table.backups)
        kind = BackupType.INCREMENTAL if has_base else BackupType.FULL
        self.push_screen(NewBackupScreen(project.project_id, remembered, kind))

    def action_restore(self, paths: list[str] | None = None) -> None:
        from tui.screens.restore import RestoreScreen

        backup = self._selected(restorable="restored")
        if backup is not None:
            self.push_screen(RestoreScreen(backup, self.main.detail_source(backup), paths or []))

    def action_browse(self) -> None:
        from tui.screens.browse import BrowseScreen

        backup = self._selected(restorable="browsed")
        if backup is not None:
            self.push_screen(BrowseScreen(backup, self.main.detail_source(backup)))

    async def action_policy(self) -> None:
        from tui.screens.policy import PolicyScreen

        project = self.main.current_project if self.screen is self.main else None
        if project is None:
            self.notify("Select a project first.", severity="warning")
            return
        try:  # read before the form opens: nothing typed can race the load
            stored = await self.mgr.policy(project.project_id)
            backups = await self.mgr.list(project.project_id)
        except (NexusError, OSError) as exc:
            self.report_error(exc, project_id=project.project_id, what="retention policy")
            return
        self.push_screen(PolicyScreen(project.project_id, stored, backups))

    def action_removed(self) -> None:
        from tui.screens.removed import RemovedScreen

        project = self.main.current_project if self.screen is self.main else None
        if project is None:
            self.notify("Select a project first.", severity="warning")
            return
        self.push_screen(RemovedScreen(project.project_id))

    def action_stats(self) -> None:
        """The stats view of the selected project (issue 15), on its highlighted backup."""
        from tui.screens.stats import StatsScreen

        project = self.main.current_project if self.screen is self.main else None
        if project is None:
            self.notify("Select a project first.", severity="warning")
            return
        backup = self.main.current_backup
        self.push_screen(StatsScreen(project.project_id, backup.id if backup else None))

    def action_protect(self) -> None:
        """Protect the highlighted backup from retention and delete, or lift that."""
        if self.refuse_write("protect a backup"):
            return
        backup = self._selected(restorable="protected")
        if backup is not None:
            self._toggle_protect(backup)

    @work(group="protect", exit_on_error=False)
    async def _toggle_protect(self, backup: BackupMetadata) -> None:
        if backup.protected:
            await self.mgr.unprotect(backup.project_id, backup.id)
            self.notify(f"{backup.id} is no longer protected.", title="Unprotected")
        else:
            await self.mgr.protect(backup.project_id, backup.id)
            self.notify(
                f"{backup.id}: no retention rule removes it; delete refuses it.", title="Protected"
            )
        self.main.reload(project_id=backup.project_id)

    def action_verify(self) -> None:
        backup = self._selected(restorable="verified")
        if backup is not None:
            self.start_verify(backup.project_id, backup.id)

    def action_delete(self) -> None:
        if self.refuse_write("delete a backup"):
            return
        backup = self._selected()
        if backup is None:
            return
        if backup.status.value in ("pending", "running", "validating") and any(
            op.backup_id == backup.id for op in self.operations.running
        ):
            self.notify("That backup is still running; cancel it first (c).", severity="warning")
            return
        body = Text.assemble(
            "Delete backup ",
            (backup.id, "bold"),
            " of project ",
            (backup.project_id, "bold"),
            f"?\n\n{backup.type.value}, {backup.status.value}, created "
            f"{fmt.exact(backup.created_at)} ({fmt.age(backup.created_at, self.now())}),\n"
            f"{fmt.plural(backup.files_count, 'file')}, {fmt.size(backup.size_bytes)}"
            + (f", tags {fmt.tags_text(backup.tags)}" if backup.tags else "")
            + ".\n\nBackups made on top of it stay restorable. This cannot be undone.",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.start_delete(backup.project_id, backup.id)

        self.push_screen(ConfirmScreen("Delete backup", body, yes="Delete", danger=True), answered)

    def action_delete_project(self) -> None:
        """Delete the selected project and all its backups, after a confirmation naming them
        (the count shown is the count deleted, or nothing is: a backup made meanwhile)."""
        if self.refuse_write("delete a project"):
            return
        project = self.main.current_project if self.screen is self.main else None
        if project is None:
            self.notify("Select a project to delete first.", severity="warning")
            return
        if self.is_locked(project.project_id):
            self.notify(f"Unlock {project.project_id} first (u).", severity="warning")
            return
        if any(op.project_id == project.project_id for op in self.operations.running):
            self.notify("An operation of that project is running; wait or cancel it (c).")
            return
        body = Text.assemble(
            "Delete project ",
            (project.project_id, "bold"),
            " and ",
            (fmt.plural(project.backups, "backup"), "bold"),
            f" ({fmt.size(project.stored_bytes)} stored)?\n\n"
            + (
                f"Its data directory {fmt.path(project.data_dir)} is not touched. "
                if project.data_dir
                else ""
            )
            + "Its logs are kept. This cannot be undone.",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.start_delete_project(project.project_id, project.backups)

        self.push_screen(
            ConfirmScreen("Delete project", body, yes="Delete project", danger=True), answered
        )

    def action_rename_project(self) -> None:
        from tui.screens.rename_project import RenameProjectScreen

        if self.refuse_write("rename a project"):
            return
        project = self.main.current_project if self.screen is self.main else None
        if project is None:
            self.notify("Select a project to rename first.", severity="warning")
            return
        if any(op.project_id == project.project_id for op in self.operations.running):
            self.notify("An operation of that project is running; wait or cancel it (c).")
            return
        existing = {p.project_id for p in self.main.projects.projects}

        def answered(new_id: str | None) -> None:
            if new_id:
                self.start_rename_project(project.project_id, new_id)

        self.push_screen(RenameProjectScreen(project.project_id, existing), answered)

    async def action_copy(self) -> None:
        from tui.screens.copy import CopyScreen

        project = self.main.current_project if self.screen is self.main else None
        if project is None:
            self.notify("Select a project to copy first.", severity="warning")
            return
        completed = sum(1 for b in self.main.table.backups if b.restorable)
        if not completed:
            self.notify(
                f"{project.project_id} has no completed backup to copy yet.", severity="warning"
            )
            return
        remembered = self.copy_targets.get(project.project_id)
        if remembered is None:  # else the project's off-site twin (`settings copy-to`)
            with contextlib.suppress(NexusError, OSError):
                to = (await self.mgr.settings(project.project_id)).get("copy_to")
                remembered = to if isinstance(to, str) else None
        self.push_screen(CopyScreen(project.project_id, completed, remembered))

    def action_new_project(self) -> None:
        from tui.screens.new_project import NewProjectScreen

        if self.refuse_write("create a project"):
            return
        existing = {p.project_id for p in self.main.projects.projects}
        self.push_screen(NewProjectScreen(existing))

    def action_cancel(self) -> None:
        running = self.operations.running
        if not running:
            self.notify("Nothing is running.")
            return
        if len(running) == 1:
            self._confirm_cancel(running[0])
            return
        options = [(op.id, op.summary()) for op in running]

        def picked(op_id: str | None) -> None:
            op = self.operations.get(op_id) if op_id else None
            if op is not None:
                self._confirm_cancel(op)

        self.push_screen(PickScreen("Cancel which operation?", options), picked)

    def _confirm_cancel(self, op: Operation) -> None:
        note = "\n\nThe backup will show FAILED (cancelled)." if op.kind == "create" else ""
        if op.kind == "restore":
            note = (
                "\n\nFiles already restored stay in the target directory; "
                "no partly written file is left."
            )
        elif op.kind == "copy":
            note = (
                "\n\nBackups copied so far stay in the target; copying again sends only "
                "what is missing."
            )

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_operation(op)

        self.push_screen(
            ConfirmScreen("Cancel", f"Cancel {op.summary()}?{note}", yes="Cancel it", danger=True),
            answered,
        )

    def cancel_operation(self, op: Operation) -> None:
        if op.worker is not None and op.running:
            op.worker.cancel()

    async def action_quit(self) -> None:
        running = self.operations.running
        if not running:
            self.exit(0)
            return
        lines = "\n".join(f"  • {op.summary()}" for op in running)
        body = (
            f"Still running:\n{lines}\n\nQuitting cancels them; a backup in progress ends "
            "FAILED (cancelled), a restore leaves the files written so far, a copy the "
            "backups it copied."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._cancel_all_and_exit(), group="quit")

        self.push_screen(ConfirmScreen("Quit?", body, yes="Quit", danger=True), answered)

    async def _cancel_all_and_exit(self) -> None:
        workers = [op.worker for op in self.operations.running if op.worker is not None]
        for worker in workers:
            worker.cancel()
        # wait until the engine has really stopped (a cancelled backup is then FAILED on disk)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(w.wait() for w in workers), return_exceptions=True), timeout=15
            )
        self.exit(0)

    def action_toggle_keys(self) -> None:
        from tui.screens.keys import KeysScreen

        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen(self.screen))


def run(root: Path, *, demo: bool = False) -> int:
    """Entry point of `nexus-backup tui` and `nexus-backup demo`; returns the exit code.

    With `demo`, `root` (a fresh temporary directory the CLI made) is first filled with
    sample projects and backups by the real core."""
    if demo:
        from core.demo import build_demo
        from core.manager import BackupManager

        root = Path(root)
        if not BackupManager(root).has_projects():
            print(f"Building demo data in {root} …", flush=True)
            asyncio.run(build_demo(root))
    result = NexusApp(root).run()
    return result or 0
