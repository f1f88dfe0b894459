"""Restore: target (by default a new directory beside the original), overwrite policy,
dry-run; a preview of what will change; a confirmation naming what will be overwritten;
progress; a clear result that says how to undo when a checkpoint was taken.

Restore never writes without a preview: the Restore button first runs the dry-run (the core's
`RestoreRequest(dry_run=True)`), shows it, and asks. Every figure shown comes from the engine's
exact `RestoreResult.counts`; the `changes` list is capped, so it only gives examples (past its
cap, counting it would hide what is overwritten and deleted).

While the restore runs, `c` (or the Cancel button) cancels it from the dialog; the engine
stops between chunks and removes the file it was writing.
"""

from __future__ import annotations

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

from core.models import BackupMetadata, RestoreRequest, RestoreResult, RestoreUndo
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
    """A new directory beside the original, never the live data itself; in the home directory
    when the original's path does not read as itself (a newline, an escape: I14), since the
    field shows its value as it is."""
    base = Path(source) if source else Path.home() / backup.project_id
    if not str(base).isprintable():
        base = Path.home() / backup.project_id
    target = base.with_name(f"{base.name}.restore-{backup.id}")
    n = 2
    while target.exists() and any(target.iterdir()):
        target = base.with_name(f"{base.name}.restore-{backup.id}-{n}")
        n += 1
    return fmt.home_short(target)


def _entries(files: int, dirs: int = 0, links: int = 0) -> str:
    """'3 files', '3 files and 1 folder', '2 folders and 1 link', '0 files'."""
    counted = ((files, "file"), (dirs, "folder"), (links, "link"))
    parts = [fmt.plural(n, word) for n, word in counted if n]
    return fmt.listing(parts) if parts else "0 files"


def summarize(result: RestoreResult) -> str:
    """'3 files and 2 folders to create · 1 file to overwrite · …', from the engine's exact
    counts (for any number of entries), never from the capped list of examples."""
    c = result.counts
    parts = [
        f"{_entries(c.files_create, c.dirs_create, c.symlinks_create)} to create",
        f"{_entries(c.files_overwrite, c.dirs_overwrite, c.symlinks_overwrite)} to overwrite",
        f"{c.files_unchanged:,} unchanged",
    ]
    if c.files_metadata or c.dirs_metadata:
        parts.append(f"{c.files_metadata + c.dirs_metadata:,} with only mode or times set again")
    parts += [
        f"{c.skipped:,} skipped",
        f"{_entries(c.delete_files, c.delete_dirs)} to delete",
        f"{fmt.size(c.bytes_to_write)} to write",
    ]
    return " · ".join(parts)


def _examples(result: RestoreResult, action: str, total: int, limit: int) -> str:
    """A few paths the engine listed for `action`, then how many more the exact count holds."""
    paths = [c.exact for c in result.changes if c.action == action][:limit]
    lines = "".join(f"  {fmt.name(p)}\n" for p in paths)
    if paths and total > len(paths):
        lines += f"  … and {total - len(paths):,} more\n"
    return lines


def _harm(
    result: RestoreResult, action: str, label: str, what: str, total: int, limit: int
) -> Text:
    """'3 files OVERWRITTEN:' and a few of their paths (nothing when there are none)."""
    style = "bold yellow" if action == "overwrite" else "bold red"
    if not total:
        return Text()
    return Text.assemble((f"{what} {label}:\n", style), _examples(result, action, total, limit))


def confirm_text(
    backup_id: str, req: RestoreRequest, result: RestoreResult, *, read_only: bool = False
) -> Text:
    """The confirmation: what is created, how many existing entries are OVERWRITTEN and
    DELETED (the engine's exact counts, with a few examples), and whether a checkpoint of
    the target is taken first."""
    c = result.counts
    body = Text()
    body.append(f"Restore {backup_id} into\n")
    body.append(f"{fmt.path(req.restore_dir)}\n\n", style="bold")
    created = _entries(c.files_create, c.dirs_create, c.symlinks_create)
    body.append(f"{created} created, {fmt.size(c.bytes_to_write)} to write in all.\n")
    overwritten = _entries(c.files_overwrite, c.dirs_overwrite, c.symlinks_overwrite)
    body.append(_harm(result, "overwrite", "OVERWRITTEN", overwritten, c.overwritten, 3))
    deleted = _entries(c.delete_files, c.delete_dirs)
    if c.delete_dirs:  # a folder goes with its contents, which the count may not include
        deleted += " (with all they hold)" if c.delete_dirs > 1 else " (with all it holds)"
    body.append(_harm(result, "delete", "DELETED from the target", deleted, c.deleted, 2))
    again = c.files_metadata + c.dirs_metadata
    if again:  # destructive too (a checkpoint is taken): named, or the person confirms blind
        what = fmt.plural(again, "existing entry", "existing entries")
        how = "gets only its" if again == 1 else "get only their"
        body.append(f"{what} {how} mode or times set again.\n", style="yellow")
    if not c.destructive:
        body.append("Nothing existing is overwritten or deleted.\n", style="green")
        return body
    body.append("\n")
    if req.checkpoint:
        body.append("A checkpoint of the target is taken first, so this can be undone.")
    elif read_only:
        body.append(
            "No checkpoint can be taken (the repository is read-only): this cannot be undone.",
            style="red",
        )
    else:
        body.append("No checkpoint will be taken: this cannot be undone.", style="red")
    return body


def drift_text(preview: RestoreResult, done: RestoreResult) -> str:
    """What the restore did beyond its preview (the target changed between the two: another
    process wrote to it), so that a person who confirmed the preview's figures learns it."""
    was, now = preview.counts, done.counts
    again_was = was.files_metadata + was.dirs_metadata
    again_now = now.files_metadata + now.dirs_metadata
    more_again = again_now > again_was  # modes or times set on more than shown
    if now.overwritten <= was.overwritten and now.deleted <= was.deleted and not more_again:
        return ""
    text = (
        f"⚠ The target changed after the preview: {now.overwritten:,} overwritten and "
        f"{now.deleted:,} deleted (the preview said {was.overwritten:,} and {was.deleted:,})"
    )
    if more_again:
        text += (
            f"; {again_now:,} with only mode or times set again (the preview said {again_was:,})"
        )
    return text + ".\n"


def cancelled_text(target: str, *, checkpointing: bool, backup_id: str) -> Text:
    """What a cancelled restore left: the files finished so far, and no partial file (the
    engine writes each file under a temporary name and removes it when stopped)."""
    text = Text("✗ Restore cancelled.\n", style="bold yellow")
    text.append(
        f"Files restored before it stopped stay in {fmt.path(target)}; "
        "no partly written file was left behind.\n"
    )
    if checkpointing:
        text.append(
            "A checkpoint of the target was being taken first; if it completed, it is in "
            f"the list as before-restore-{backup_id}.\n"
        )
    return text


def undo_text(result: RestoreResult) -> str:
    """The engine's undo: the key here, and the command line that runs it anywhere."""
    if result.undo is None:
        return ""
    return (
        f"A checkpoint of the target was taken first: {result.undo.checkpoint_id}.\n"
        f"Press ctrl+z to undo, or run: {result.undo_hint or result.undo.command()}"
    )


def undo_confirm_text(undo: RestoreUndo) -> Text:
    return Text.assemble(
        "Put ",
        (fmt.path(undo.target), "bold"),
        " back as it was before this restore?\n\nThe checkpoint ",
        (undo.checkpoint_id, "bold"),
        " is restored over it: the files the restore changed get their earlier bytes back and "
        "the files it added are deleted; files whose bytes already match are left as they are.",
    )


class RestoreScreen(WorkerErrors, ModalScreen[None]):
    app: NexusApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="restore.close"),
        Binding("ctrl+d", "preview", "Dry-run preview", id="restore.preview", priority=True),
        Binding("ctrl+s", "restore", "Restore", id="restore.run"),
        Binding(PICK_KEY, "pick_dir", "Browse directories", id="restore.pickdir"),
        Binding("c", "cancel_restore", "Cancel restore", id="restore.cancel"),
        Binding("ctrl+z", "undo", "Undo restore", id="restore.undo"),
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
        self._undoing = False
        self._preview_key: tuple | None = None
        self._confirm_after_preview = False
        self.op: Operation | None = None
        #: The request being carried out, and whether it got as far as taking a checkpoint.
        self.request: RestoreRequest | None = None
        self._checkpointing = False

    def compose(self) -> ComposeResult:
        b = self.backup
        with Vertical(id="dialog", classes="form wide"):
            yield Static(
                Text.assemble(
                    (b.id, "bold"),
                    f" · {b.type.value} · {fmt.exact(b.created_at)}"
                    f" · {fmt.plural(b.files_count, 'file')}"
                    f" · {fmt.size(b.size_bytes)}",
                ),
                id="restore-what",
            )
            with Horizontal(classes="field"):
                yield Label("Restore", classes="field-label")
                yield Label(self._paths_text(), id="paths", markup=False)
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
            yield Label("", id="target-help", classes="field-help", markup=False)
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
            yield Label("", id="preview-summary", markup=False)
            yield DataTable(id="preview", cursor_type="row", zebra_stripes=True)
            yield Vertical(id="progress-area")
            yield Static("", id="result", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Preview (ctrl+d)", id="do-preview", compact=True)
                yield Button("Restore… (ctrl+s)", id="do-restore", variant="primary", compact=True)
                yield Button("Cancel restore (c)", id="cancel-op", variant="error", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Restore · {self.backup.project_id}"
        for inp in self.query(Input):
            inp.cursor_blink = self.app.cursor_blink
        table = self.query_one("#preview", DataTable)
        table.add_columns("Action", "Path", "Size", "Why")
        table.display = False
        self.query_one("#result").display = False
        self.query_one("#cancel-op").display = False
        if self.app.read_only:
            # a checkpoint is a backup: it cannot be written to a read-only repository
            tick = self.query_one("#checkpoint", Tick)
            tick.value, tick.disabled = False, True
            tick.label = "no checkpoint"  # (the row has no room for the reason at 80x24)
            tick.tooltip = "A checkpoint is a backup: the repository is read-only."
        self._check_target()
        self.query_one("#target", Input).focus()

    def _paths_text(self) -> str:
        if not self.paths:
            return "everything in the backup"
        shown = ", ".join(fmt.name(p) for p in self.paths[:4])
        shown += " …" if len(self.paths) > 4 else ""
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
        table = self.query_one("#preview", DataTable)
        table.clear()
        interesting = [c for c in result.changes if c.action not in ("unchanged",)]
        rows = (interesting or result.changes)[:PREVIEW_ROWS]
        more = result.changes_truncated or len(rows) < len(interesting or result.changes)
        note = f" · the list shows {len(rows):,} examples" if more else ""
        self._say(f"Preview: {summarize(result)}{note}")
        for change in rows:  # Text cells: a str cell is markup to a DataTable (`x[/]y`, I14)
            table.add_row(
                Text(change.action, style=ACTION_STYLE.get(change.action, "")),
                Text(fmt.name(change.exact)),
                Text(
                    fmt.size(change.size) if change.kind == "file" else change.kind, justify="right"
                ),
                Text(fmt.clean(change.reason or "")),
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
        body = confirm_text(self.backup.id, req, self.preview, read_only=bool(self.app.read_only))

        def answered(yes: bool | None) -> None:
            if yes:
                self.request = req
                self.op = self.app.start_restore(req)
                self.show_operation(self.op)

        danger = self.preview.counts.destructive
        self.app.push_screen(
            ConfirmScreen("Restore?", body, yes="Restore", danger=danger), answered
        )

    def action_undo(self) -> None:
        """Undo the restore this dialog ran: its checkpoint back over the target (the engine's
        RestoreUndo), after a confirmation; once."""
        r = self.op.result if self.op is not None and self.op.state == "done" else None
        if not isinstance(r, RestoreResult) or r.undo is None or self._undoing:
            self.app.notify("Nothing to undo here.", severity="warning")
            return
        undo = r.undo

        def answered(yes: bool | None) -> None:
            if yes:
                self._undoing = True
                self.query_one("#restore-progress").display = False
                self.show_operation(self.app.start_restore(undo.request), progress_id="undo")

        self.app.push_screen(
            ConfirmScreen("Undo restore", undo_confirm_text(undo), yes="Undo", danger=True),
            answered,
        )

    def show_operation(self, op: Operation, *, progress_id: str = "restore-progress") -> None:
        self.op = op
        for widget in self.query("Input, Select, Checkbox, #do-preview, #do-restore"):
            widget.disabled = True
        self.query_one("#preview", DataTable).display = False
        self.query_one("#dialog").add_class("-running")
        self.query_one("#progress-area").mount(OperationProgress(op, id=progress_id))
        self.query_one("#do-preview").display = False
        self.query_one("#do-restore").display = False
        self.query_one("#cancel-op").display = True
        self.query_one("#cancel-op", Button).focus()
        self.app.operations_changed.subscribe(self, self._on_ops_changed)

    def _on_ops_changed(self, op: Operation) -> None:
        if self.op is None or op.id != self.op.id:
            return
        if op.running:
            self._checkpointing |= op.progress is not None and op.progress.phase == "checkpoint"
            return
        self.query_one("#cancel-op").display = False
        self.query_one("#close", Button).focus()
        self.query_one("#preview-summary").display = False  # the result says what was done
        result = self.query_one("#result", Static)
        result.display = True
        if op.state == "done" and isinstance(op.result, RestoreResult) and self._undoing:
            r = op.result
            result.update(
                Text(
                    f"✓ Undone: {fmt.path(r.restore_dir)} is as it was before the restore "
                    f"({fmt.plural(r.files_written, 'file')} put back, {r.files_deleted:,} "
                    f"deleted, {r.files_unchanged:,} left as they were).",
                    style="green",
                )
            )
        elif op.state == "done" and isinstance(op.result, RestoreResult):
            r = op.result
            text = Text(
                f"✓ Restored into {fmt.path(r.restore_dir)}\n"
                f"{fmt.plural(r.files_written, 'file')} written ({fmt.size(r.bytes_written)}), "
                f"{r.files_unchanged:,} unchanged, {r.files_skipped:,} skipped, "
                f"{r.files_deleted:,} deleted, {fmt.plural(r.dirs_created, 'folder')} created "
                f"in {fmt.duration(r.duration_seconds)}.\n",
                style="green",
            )
            if r.files_damaged:
                named = ", ".join(fmt.name(d.path) for d in r.damaged_files[:3])
                more = f" and {r.files_damaged - 3:,} more" if r.files_damaged > 3 else ""
                text.append(
                    f"✗ {fmt.plural(r.files_damaged, 'file')} not restored (damaged in the "
                    f"repository): {named}{more}. What the target held there is left as it "
                    "was; every written file matches the backup.\n",
                    style="bold red",
                )
            else:
                text.append(
                    "Verified: every written file matches the backup.\n"
                    if r.verified
                    else "Not verified.\n",
                    style="green" if r.verified else "yellow",
                )
            if r.warnings:
                text.append("⚠ " + "; ".join(r.warnings[:3]) + "\n", style="yellow")
            if self.preview is not None:
                text.append(drift_text(self.preview, r), style="bold yellow")
            text.append(undo_text(r), style="bold")
            result.update(text)
        elif op.state == "cancelled":
            target = self.request.restore_dir if self.request else ""
            result.update(
                cancelled_text(target, checkpointing=self._checkpointing, backup_id=self.backup.id)
            )
        else:
            result.update(Text(f"✗ restore {fmt.failure_text(op.state, op.error)}", style="red"))

    def action_cancel_restore(self) -> None:
        """`c` or the button: cancel the restore this dialog runs (the engine stops between
        chunks and removes the file it was writing)."""
        if self.op is not None and self.op.running:
            self.app.cancel_operation(self.op)

    def action_pick_dir(self) -> None:
        if self.op is None:
            pick_directory(self, "target", "Restore into")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.has_class("pick-dir"):
            return self.action_pick_dir()
        {
            "do-preview": self.action_preview,
            "do-restore": self.action_restore,
            "cancel-op": self.action_cancel_restore,
        }.get(event.button.id or "", self.action_close)()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_restore()

    def action_close(self) -> None:
        if self.op is not None and self.op.running:
            self.app.notify(f"{self.op.label} goes on in the background.")
        self.dismiss(None)
