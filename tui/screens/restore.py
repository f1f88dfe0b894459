"""Restore: target (by default a new directory beside the original), overwrite policy,
dry-run; a preview of what will change; a confirmation naming what will be overwritten;
progress; a clear result that says how to undo when a checkpoint was taken.

Restore never writes without a preview: the Restore button first runs the dry-run (the core's
`RestoreRequest(dry_run=True)`), shows it, and asks.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import ValidationError
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Select, Static

from core.models import BackupMetadata, RestoreRequest, RestoreResult
from tui import format as fmt
from tui.messages import RestorePreviewReady
from tui.operations import Operation
from tui.screens.confirm import ConfirmScreen
from tui.screens.pick_directory import PICK_KEY, pick_button, pick_directory
from tui.validation import DirectorySuggester, RestoreTarget, expand
from tui.widgets.progress_panel import OperationProgress
from tui.widgets.tick import Tick
from tui.workers import WorkerErrors

if TYPE_CHECKING:
    from tui.app import NexusApp

ACTION_STYLE = {
    "create": "green",
    "overwrite": "bold yellow",
    "delete": "bold red",
    "unchanged": "dim",
    "skip": "dim",
    "metadata": "cyan",
}
PREVIEW_ROWS = 500


def default_target(backup: BackupMetadata, source: str | None) -> str:
    """A new directory beside the original, never the live data itself."""
    base = Path(source) if source else Path.home() / backup.project_id
    target = base.with_name(f"{base.name}.restore-{backup.id}")
    n = 2
    while target.exists() and any(target.iterdir()):
        target = base.with_name(f"{base.name}.restore-{backup.id}-{n}")
        n += 1
    return fmt.home_short(target)


def summarize(result: RestoreResult) -> str:
    """'3 files and 2 folders to create · 1 to overwrite · …' from a dry run's changes."""
    files = Counter(c.action for c in result.changes if c.kind != "dir")
    dirs = Counter(c.action for c in result.changes if c.kind == "dir")
    create = f"{files.get('create', 0)} files"
    if dirs.get("create"):
        create += f" and {dirs['create']} folders"
    parts = [
        f"{create} to create",
        f"{files.get('overwrite', 0)} to overwrite",
        f"{files.get('unchanged', 0) or result.files_unchanged} unchanged",
        f"{files.get('skip', 0) or result.files_skipped} skipped",
        f"{files.get('delete', 0) + dirs.get('delete', 0) or result.files_deleted} to delete",
    ]
    if result.changes_truncated:
        parts.append("(list truncated)")
    return " · ".join(parts)


def undo_text(result: RestoreResult) -> str:
    if not result.checkpoint_id:
        return ""
    hint = result.undo_hint or (
        f"restore checkpoint {result.checkpoint_id} into {result.restore_dir} "
        "with overwrite 'always' and 'delete extra files'"
    )
    return f"A checkpoint of the target was taken first: {result.checkpoint_id}.\nTo undo: {hint}"


class RestoreScreen(WorkerErrors, ModalScreen[None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="restore.close"),
        Binding("ctrl+d", "preview", "Dry-run preview", id="restore.preview", priority=True),
        Binding("ctrl+s", "restore", "Restore", id="restore.run"),
        Binding(PICK_KEY, "pick_dir", "Browse directories", id="restore.pickdir"),
    ]

    def __init__(
        self, backup: BackupMetadata, source: str | None, paths: list[str] | None = None
    ) -> None:
        super().__init__()
        self.backup = backup
        self.project_id = backup.project_id
        self.source = source
        self.paths = list(paths or [])
        self.preview: RestoreResult | None = None
        self._preview_key: tuple | None = None
        self._confirm_after_preview = False
        self.op: Operation | None = None

    def compose(self) -> ComposeResult:
        b = self.backup
        with Vertical(id="dialog", classes="form wide"):
            yield Static(
                Text.assemble(
                    (b.id, "bold"),
                    f" · {b.type.value} · {fmt.exact(b.created_at)} · {b.files_count} files"
                    f" · {fmt.size(b.size_bytes)}",
                ),
                id="restore-what",
            )
            with Horizontal(classes="field"):
                yield Label("Restore", classes="field-label")
                yield Label(self._paths_text(), id="paths")
            with Horizontal(classes="field"):
                yield Label("Target", classes="field-label")
                yield Input(
                    default_target(b, self.source),
                    validators=[RestoreTarget()],
                    suggester=DirectorySuggester(),
                    id="target",
                    compact=True,
                )
                yield pick_button("target")
            yield Label("", id="target-help", classes="field-help")
            with Horizontal(classes="field"):
                yield Label("Overwrite", classes="field-label")
                yield Select(
                    [
                        ("if-changed: replace files that differ", "if-changed"),
                        ("always: replace every file", "always"),
                        ("never: keep existing files", "never"),
                    ],
                    value="if-changed",
                    allow_blank=False,
                    id="overwrite",
                    compact=True,
                )
            with Horizontal(classes="checks"):
                yield Tick("delete extra files", id="delete-extra", compact=True)
                yield Tick("checkpoint first", value=True, id="checkpoint", compact=True)
                yield Tick("dry run only", id="dry-run", compact=True)
            yield Label("", id="preview-summary")
            yield DataTable(id="preview", cursor_type="row", zebra_stripes=True)
            yield Vertical(id="progress-area")
            yield Static("", id="result")
            with Horizontal(classes="buttons"):
                yield Button("Preview (ctrl+d)", id="do-preview", compact=True)
                yield Button("Restore… (ctrl+s)", id="do-restore", variant="primary", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Restore · {self.backup.project_id}"
        for inp in self.query(Input):
            inp.cursor_blink = self.app.cursor_blink
        table = self.query_one("#preview", DataTable)
        table.add_columns("Action", "Path", "Size", "Why")
        table.display = False
        self.query_one("#result").display = False
        self._check_target()
        self.query_one("#target", Input).focus()

    def _paths_text(self) -> str:
        if not self.paths:
            return "everything in the backup"
        shown = ", ".join(self.paths[:4]) + (" …" if len(self.paths) > 4 else "")
        return f"{len(self.paths)} marked: {shown}"

    # -- the form

    def build_request(self, *, dry_run: bool) -> RestoreRequest | None:
        target = self.query_one("#target", Input).value
        check = RestoreTarget().validate(target)
        if not check.is_valid:
            self._say(f"✗ {check.failure_descriptions[0]}", error=True)
            return None
        try:
            return RestoreRequest(
                project_id=self.backup.project_id,
                backup_id=self.backup.id,
                restore_dir=str(expand(target)),
                paths=self.paths,
                overwrite=self.query_one("#overwrite", Select).value,  # type: ignore[arg-type]
                delete_extra=self.query_one("#delete-extra", Checkbox).value,
                checkpoint=self.query_one("#checkpoint", Checkbox).value,
                dry_run=dry_run,
            )
        except ValidationError as exc:
            self._say(f"✗ {exc.errors()[0]['msg']}", error=True)
            return None

    def _key(self, req: RestoreRequest) -> tuple:
        return (req.restore_dir, req.overwrite, req.delete_extra, tuple(req.paths))

    def _check_target(self) -> None:
        value = self.query_one("#target", Input).value
        label = self.query_one("#target-help", Label)
        check = RestoreTarget().validate(value)
        label.set_class(not check.is_valid, "-bad")
        label.remove_class("-warn")
        if not check.is_valid:
            label.update("✗ " + check.failure_descriptions[0])
            return
        path = expand(value)
        if not path.exists():
            label.update("✓ a new directory; nothing existing is touched")
        elif not any(path.iterdir()):
            label.update("✓ an empty directory")
        else:
            live = self.source and path == expand(self.source)
            label.update(
                ("⚠ this is the live data directory! " if live else "⚠ not empty: ")
                + "files may be overwritten (a checkpoint is taken first when ticked)"
            )
            label.add_class("-warn")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "target":
            self._check_target()
            self._stale()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self._stale()

    def on_checkbox_changed(self, _event: Checkbox.Changed) -> None:
        self._stale()

    def _stale(self) -> None:
        if self.preview is not None:
            self.query_one("#preview-summary", Label).update(
                "(settings changed: preview again with ctrl+d)"
            )

    def _say(self, text: str, *, error: bool = False) -> None:
        label = self.query_one("#preview-summary", Label)
        label.update(text)
        label.set_class(error, "-bad")

    # -- preview (dry run)

    def action_preview(self) -> None:
        if self.op is not None:
            return
        req = self.build_request(dry_run=True)
        if req is None:
            return
        self._say("previewing…")
        self._run_preview(req)

    @work(group="restore-preview", exclusive=True, exit_on_error=False, description="preview")
    async def _run_preview(self, req: RestoreRequest) -> None:
        result = await self.app.mgr.restore(req)
        self.post_message(RestorePreviewReady(result))

    def on_restore_preview_ready(self, message: RestorePreviewReady) -> None:
        result = message.result
        req = self.build_request(dry_run=True)
        self.preview = result
        self._preview_key = self._key(req) if req else None
        self._say(f"Preview: {summarize(result)}")
        table = self.query_one("#preview", DataTable)
        table.clear()
        interesting = [c for c in result.changes if c.action not in ("unchanged",)]
        for change in (interesting or result.changes)[:PREVIEW_ROWS]:
            table.add_row(
                Text(change.action, style=ACTION_STYLE.get(change.action, "")),
                change.path,
                Text(
                    fmt.size(change.size) if change.kind == "file" else change.kind, justify="right"
                ),
                change.reason or "",
            )
        table.display = True
        if self._confirm_after_preview:
            self._confirm_after_preview = False
            self._confirm()

    # -- restore

    def action_restore(self) -> None:
        if self.op is not None:
            return
        if self.query_one("#dry-run", Checkbox).value:
            self.action_preview()
            return
        req = self.build_request(dry_run=True)
        if req is None:
            return
        if self.preview is None or self._preview_key != self._key(req):
            self._confirm_after_preview = True
            self.action_preview()
            return
        self._confirm()

    def _confirm(self) -> None:
        req = self.build_request(dry_run=False)
        if req is None or self.preview is None:
            return
        changes = self.preview.changes
        overwrite = [c.path for c in changes if c.action == "overwrite"]
        delete = [c.path for c in changes if c.action == "delete"]
        create = [c for c in changes if c.action == "create" and c.kind != "dir"]
        body = Text()
        body.append(f"Restore {self.backup.id} into\n")
        body.append(f"{fmt.home_short(req.restore_dir)}\n\n", style="bold")
        body.append(f"{len(create)} files created.\n")
        if overwrite:
            body.append(f"{len(overwrite)} existing files OVERWRITTEN:\n", style="bold yellow")
            body.append("".join(f"  {p}\n" for p in overwrite[:8]))
            if len(overwrite) > 8:
                body.append(f"  … and {len(overwrite) - 8} more\n")
        if delete:
            body.append(f"{len(delete)} files DELETED from the target:\n", style="bold red")
            body.append("".join(f"  {p}\n" for p in delete[:5]))
        if not overwrite and not delete:
            body.append("Nothing existing is overwritten or deleted.\n", style="green")
        elif req.checkpoint:
            body.append("\nA checkpoint of the target is taken first, so this can be undone.")
        else:
            body.append("\nNo checkpoint will be taken: this cannot be undone.", style="red")

        def answered(yes: bool | None) -> None:
            if yes:
                self.op = self.app.start_restore(req)
                self.show_operation(self.op)

        danger = bool(overwrite or delete)
        self.app.push_screen(
            ConfirmScreen("Restore?", body, yes="Restore", danger=danger), answered
        )

    def show_operation(self, op: Operation) -> None:
        self.op = op
        for widget in self.query("Input, Select, Checkbox, #do-preview, #do-restore"):
            widget.disabled = True
        self.query_one("#preview", DataTable).display = False
        self.query_one("#progress-area").mount(OperationProgress(op, id="restore-progress"))
        self.query_one("#close", Button).focus()
        self.app.operations_changed.subscribe(self, self._on_ops_changed)

    def _on_ops_changed(self, op: Operation) -> None:
        if self.op is None or op.id != self.op.id or op.running:
            return
        result = self.query_one("#result", Static)
        result.display = True
        if op.state == "done" and isinstance(op.result, RestoreResult):
            r = op.result
            text = Text(
                f"✓ Restored into {fmt.home_short(r.restore_dir)}\n"
                f"{r.files_written} files written ({fmt.size(r.bytes_written)}), "
                f"{r.files_unchanged} unchanged, {r.files_skipped} skipped, "
                f"{r.files_deleted} deleted, {r.dirs_created} folders created "
                f"in {fmt.duration(r.duration_seconds)}.\n",
                style="green",
            )
            text.append(
                "Verified: every written file matches the backup.\n"
                if r.verified
                else "Not verified.\n",
                style="green" if r.verified else "yellow",
            )
            if r.warnings:
                text.append("⚠ " + "; ".join(r.warnings[:3]) + "\n", style="yellow")
            text.append(undo_text(r), style="bold")
            result.update(text)
        else:
            result.update(Text(f"✗ restore {op.state}: {op.error or ''}", style="red"))

    def action_pick_dir(self) -> None:
        if self.op is None:
            pick_directory(self, "target", "Restore into")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.has_class("pick-dir"):
            return self.action_pick_dir()
        {"do-preview": self.action_preview, "do-restore": self.action_restore}.get(
            event.button.id or "", self.action_close
        )()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_restore()

    def action_close(self) -> None:
        if self.op is not None and self.op.running:
            self.app.notify(f"{self.op.label} goes on in the background.")
        self.dismiss(None)
