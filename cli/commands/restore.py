"""`restore`: restore a backup (or some paths of it) into a directory, after a checkpoint of
the target; `--dry-run` lists what would change. Prints the command that undoes it."""

from __future__ import annotations

import os

from cli.context import EXIT_DAMAGED, EXIT_OK, EXIT_SKIPPED, Context, run
from cli.render import PROG, block, clean, duration, name, out, plural, size, table
from core.models import RestoreRequest, RestoreResult


def cmd_restore(ctx: Context) -> int:
    a = ctx.args
    restore_dir = os.path.abspath(a.restore_dir)
    req = RestoreRequest(
        project_id=a.project,
        backup_id=a.backup_id,
        restore_dir=restore_dir,
        paths=a.paths,
        overwrite=a.overwrite,
        delete_extra=a.delete_extra,
        dry_run=a.dry_run,
        checkpoint=a.checkpoint,
    )
    mgr = ctx.manager
    with ctx.progress() as bar:
        res: RestoreResult = run(mgr.restore(req, progress=bar))
    code = EXIT_DAMAGED if res.files_damaged else EXIT_SKIPPED if res.warnings else EXIT_OK
    if ctx.json:
        ctx.emit(res)
        return code
    out("\n".join(_restore_lines(ctx, res)))
    return code


def _restore_lines(ctx: Context, res: RestoreResult) -> list[str]:
    target = name(res.restore_dir)
    if res.dry_run:
        lines = [f"Dry run: restoring backup {res.backup_id} into {target} would:"]
        changes = [c for c in res.changes if c.action != "unchanged"]
        if not changes:
            lines.append("  change nothing (the target already matches)")
        rows = []
        for c in changes:
            what = name(c.exact) + ("/" if c.kind == "dir" else "")
            if c.kind == "symlink":
                what += " (symlink)"
            elif c.kind == "special":
                what += " (fifo, socket or device)"
            detail = (
                size(c.size) if c.kind == "file" and c.action in ("create", "overwrite") else ""
            )
            if c.reason:
                detail = f"{detail}; {c.reason}" if detail else c.reason
            rows.append([c.action, what, detail])
        if rows:
            lines += ["  " + line for line in table(["ACTION", "PATH", "DETAIL"], rows, set())[1:]]
        if res.changes_truncated:
            lines.append("  ... (more changes not listed)")
        # The engine's exact counts (for any number of entries), not the capped examples.
        c = res.counts
        again = ""
        if c.files_metadata or c.dirs_metadata:
            again = f", {c.files_metadata + c.dirs_metadata} with only mode or times set again"
        # Every entry of the target replaced, whatever takes its place (a file, a directory,
        # a symlink): past the list's cap this line is all the user sees (invariant 5).
        created = c.files_create + c.dirs_create + c.symlinks_create
        lines.append(
            f"  in all: {created} to create, {c.overwritten} to overwrite "
            f"({size(c.bytes_to_write)} to write), {c.deleted} to delete, "
            f"{c.files_unchanged} unchanged{again}, {c.skipped} skipped"
        )
        lines.append("Nothing was changed (dry run).")
    else:
        lines = [f"Restored backup {res.backup_id} of project {res.project_id} into {target}"]
        details = [
            (
                "Files",
                f"{res.files_written} written, {res.files_unchanged} unchanged, "
                f"{res.files_skipped} skipped, {res.files_deleted} deleted",
            ),
            (
                "Also",
                f"{plural(res.dirs_created, 'directory', 'directories')} created, "
                f"{plural(res.symlinks_created, 'symlink')} created",
            ),
            ("Written", f"{size(res.bytes_written)} in {duration(res.duration_seconds)}"),
            (
                "Verified",
                "yes, every written file matches its hash"
                if res.verified
                else "every written file matches its hash; the damaged ones were not written"
                if res.files_damaged
                else "no",
            ),
        ]
        if res.undo is not None:
            undo = res.undo.command(root=str(ctx.root), repository=ctx.repository, prog=PROG)
            checkpoint = f"{res.undo.checkpoint_id} (the target before this restore)"
            details.append(("Checkpoint", checkpoint))
            details.append(("Undo with", undo))
        else:
            why = (
                "--no-checkpoint"
                if not ctx.args.checkpoint
                else "nothing that was in the target changed"
            )
            details.append(("Checkpoint", f"none ({why})"))
        lines += ["  " + line for line in block(details)]
    if res.warnings:
        lines.append(f"Warning: {plural(len(res.warnings), 'problem')}:")
        lines += [f"  {clean(w)}" for w in res.warnings]
    if res.files_damaged:
        lines.append(
            f"Damaged: {plural(res.files_damaged, 'file')} not restored (damaged in the "
            "repository; what the target held there is left as it was; everything else was "
            f"restored; `{PROG} check {res.project_id} --read-data` says more):"
        )
        lines += [f"  {name(d.path)}: {clean(d.reason)}" for d in res.damaged_files]
        if res.files_damaged > len(res.damaged_files):
            lines.append(f"  ... and {res.files_damaged - len(res.damaged_files)} more")
    return lines
