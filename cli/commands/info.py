"""`info`: everything about one backup (or "latest"): metadata, stats, warnings, manifest,
parent chain and last verify."""

from __future__ import annotations

import json

from cli.commands.stats import phases_text
from cli.context import EXIT_ERROR, EXIT_OK, Context, run
from cli.render import (
    block,
    clean,
    config_damage,
    duration,
    error_line,
    fmt_tags,
    name,
    out,
    plural,
    size,
    speed,
    stamp,
)
from core.models import BackupInfo, BackupInfoView, BackupMetadata, VerifyResult


def cmd_info(ctx: Context) -> int:
    a = ctx.args
    info: BackupInfo = run(ctx.manager.info(a.project, a.backup_id))
    # its metadata stands alone and reads "completed": never shown as if it could be restored
    problem = info.config_problem
    if ctx.json:
        ctx.emit(BackupInfoView.of(info))  # the metadata at the top level, as the API
    else:
        out("\n".join(_info_lines(info)))
    if problem:
        error_line(config_damage(problem))
        return EXIT_ERROR
    return EXIT_OK


def _info_lines(info: BackupInfo) -> list[str]:
    m = info.metadata
    s = m.stats
    extra = json.dumps(m.extra, ensure_ascii=False, sort_keys=True) if m.extra else "-"
    pairs = [
        ("ID", m.id),
        ("Project", m.project_id),
        ("Type", m.type.value + (f" (checkpoint {clean(m.name)!r})" if m.name else "")),
        ("Status", m.status.value),
        ("Created", stamp(m.created_at)),
        ("Made by", clean(f"{m.user or '?'}@{m.host}") if m.host else "-"),
        ("Completed", stamp(m.completed_at)),
        ("Size", f"{size(m.size_bytes)} ({m.size_bytes} bytes)"),
        ("Files", str(m.files_count)),
        ("Checksum", m.checksum or "-"),
        ("Parent", m.parent_backup_id or "-"),
        ("Error", clean(m.error_message) if m.error_message else "-"),
        ("Tags", clean(fmt_tags(m.tags))),
        ("Extra", clean(extra)),
        *_retention(m),
        (
            "Stats",
            f"read {size(s.bytes_read)}, stored {size(s.bytes_stored)} new; "
            f"chunks {s.chunks_total:,} in the backup, {s.chunks_new:,} new\n"
            f"files {s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged, "
            f"{s.files_removed} removed; {plural(s.dirs_count, 'dir')}, "
            f"{plural(s.symlinks_count, 'symlink')}\n"
            f"took {duration(s.duration_seconds)} "
            f"({speed(m.size_bytes, s.bytes_read, s.duration_seconds)})",
        ),
    ]
    if s.phases is not None:  # issue 15: where the time went
        pairs.append(("Phases", phases_text(s)))
    if s.warnings:
        shown = "\n".join(clean(w) for w in s.warnings)
        pairs.append((f"Warnings ({len(s.warnings)})", shown))
    if info.manifest is not None:
        mf = info.manifest
        source = name(mf.source) if mf.source else "-"
        if mf.hostname:
            source += f" on {clean(mf.hostname)}"
        pairs.append(
            (
                "Manifest",
                f"{source}\n{plural(mf.files, 'file')}, {plural(mf.dirs, 'dir')}, "
                f"{plural(mf.symlinks, 'symlink')}, {size(mf.size_bytes)}, "
                f"{plural(mf.chunks, 'chunk')}",
            )
        )
    else:
        pairs.append(("Manifest", "-"))
    gone = set(info.deleted_parents)
    links = [f"{b} (deleted)" if b in gone else b for b in info.parent_chain]
    chain = " <- ".join([m.id, *links]) if info.parent_chain else "- (no parent)"
    pairs.append(("Parent chain", chain))
    pairs.append(("Last verify", _verify_summary(info.last_verify)))
    return block(pairs)


def _verify_summary(v: VerifyResult | None) -> str:
    if v is None:
        return "never"
    kind = "quick" if v.quick else "full"
    state = "ok" if v.ok else f"DAMAGED ({plural(len(v.damaged_files), 'damaged file')})"
    return f"{state}, {kind}, {stamp(v.checked_at)}"


def _retention(m: BackupMetadata) -> list[tuple[str, str]]:
    """Only for a protected or soft-removed backup (the others' output is unchanged)."""
    pairs = []
    if m.protected:
        pairs.append(("Protected", "yes: no retention rule removes it, delete refuses it"))
    if m.removed_at is not None:
        until = f"{m.purge_after:%Y-%m-%d %H:%M:%S} UTC" if m.purge_after else "-"
        pairs.append(
            (
                "Removed",
                f"by retention {stamp(m.removed_at)} ({clean(m.removed_reason or '-')}); "
                f"restorable until {until} (undelete brings it back)",
            )
        )
    return pairs
