"""`copy`: copy a project's backups (default: every completed one) into another repository
(`--to` a directory or a store URL). Only the chunks the target lacks travel, ids and
metadata are kept, each copy is verified, and a copy cut short is finished by running the
same command again. An encrypted target under another password than the project's is opened
with --to-password-file F, --to-password-command CMD or $NEXUS_BACKUP_TO_PASSWORD; with
--encrypt a new target is created encrypted (under that password)."""

from __future__ import annotations

from cli.context import EXIT_OK, Context, refuse_process_bound, run
from cli.password import TO_HOW
from cli.render import error_line, name, out, plural, size
from core.errors import TargetWrongPassword
from core.models import CopyResult


def cmd_copy(ctx: Context) -> int:
    a = ctx.args
    refuse_process_bound(a.to, "copy target")
    try:
        with ctx.progress() as bar:
            result: CopyResult = run(
                ctx.manager.copy(a.project, a.to, a.backup_ids or None, progress=bar)
            )
    except TargetWrongPassword as exc:
        raise TargetWrongPassword(f"{exc} (its password: {TO_HOW})") from None
    for warning in result.warnings:
        error_line(warning, kind="warning")
    if ctx.json:
        ctx.emit(result)
        return EXIT_OK
    lines = []
    for c in result.copied:
        lines.append(
            f"Backup {c.backup_id}: copied and verified ({plural(c.chunks_sent, 'chunk')} sent, "
            f"{size(c.bytes_sent)}; {c.chunks_present} already there)"
        )
    for backup_id in result.already_there:
        lines.append(f"Backup {backup_id}: already in the target")
    if not lines:
        lines.append(f"No completed backups to copy in project {a.project}.")
    lines.append(
        f"{plural(len(result.copied), 'backup')} copied to {name(result.target)} "
        f"({size(result.bytes_sent)} sent)"
    )
    out("\n".join(lines))
    return EXIT_OK
