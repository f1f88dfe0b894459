"""Retention: `policy set|show|clear`, `forget`, `protect`, `unprotect`, `undelete`.

The rules are restic's (see README, "Retention"); `forget` prints every backup with keep or
remove and its reasons, and the space removal frees. Exit 1 when a reclaim was refused (the
backups are removed, their data kept).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from cli.commands import schedule_flags
from cli.context import EXIT_ERROR, EXIT_OK, Context, UsageError, run
from cli.render import ago, error_line, first_ids, fmt_tags, out, plural, size, table

if TYPE_CHECKING:  # the parser imports this module for its flags: not pydantic's models
    from core.models import BackupMetadata
    from core.retention import ForgetResult, Policy

COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHINS = ("within", "within-hourly", "within-daily", "within-weekly", "within-monthly")
WITHINS += ("within-yearly",)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more, got {value}")
    return value


def max_unused(text: str) -> float:
    """restic's --max-unused as a share of a pack: `5%`, `0.05`, `0` (repack every partly
    used pack)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (e.g. 5%)") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0% and 100%, got {text}")
    return value


def add_rule_flags(p: argparse.ArgumentParser, *, grace: bool = True) -> None:
    """The `--keep-*` flags, restic's names; every default None (not given)."""
    for name in COUNTS:
        p.add_argument(f"--keep-{name}", metavar="N", type=_count, default=None)
    for name in WITHINS:
        p.add_argument(f"--keep-{name}", metavar="DURATION", default=None, help="e.g. 30d, 1y6m")
    p.add_argument(
        "--keep-tag",
        metavar="K[=V]",
        action="append",
        default=None,
        help="keep backups with this tag; repeatable",
    )
    p.add_argument(
        "--keep-checkpoints",
        metavar="N|DURATION",
        default=None,
        help="checkpoints (taken before restores) kept: the newest N, or those within DURATION",
    )
    if grace:
        p.add_argument(
            "--grace",
            metavar="HOURS",
            type=_count,
            default=None,
            help="hours a removed backup stays restorable (undelete); default 24",
        )


def given_rules(a: argparse.Namespace) -> dict:
    """The rules given on the command line, as Policy fields."""
    rules: dict = {}
    for name in (*COUNTS, *WITHINS, "checkpoints"):
        value = getattr(a, "keep_" + name.replace("-", "_"), None)
        if value is not None:
            rules["keep_" + name.replace("-", "_")] = value
    if a.keep_tag is not None:
        rules["keep_tags"] = a.keep_tag
    if getattr(a, "grace", None) is not None:
        rules["grace_hours"] = a.grace
    return rules


def _show(policy: Policy | None, project: str) -> None:
    if policy is None:
        out(f"Project {project} has no retention policy (backups are kept until deleted).")
        return
    out(f"Retention policy of project {project}:")
    out("\n".join("  " + rule for rule in policy.describe()))
    for line in schedule_flags.show_lines(policy, project):
        out(line)


def cmd_policy(ctx: Context) -> int:
    a, mgr = ctx.args, ctx.manager
    rules = given_rules(a) | schedule_flags.given(a)
    if a.action == "set":
        if not rules:
            raise UsageError(
                "policy set: give at least one --keep-... rule (or --grace, --schedule...)"
            )
        policy = run(mgr.set_policy(a.project, None, merge=rules))
    elif a.action == "clear":
        if rules:
            raise UsageError("policy clear takes no rule")
        policy = run(mgr.set_policy(a.project, None))
    else:
        if rules:
            raise UsageError("policy show takes no rule (to change it: policy set)")
        policy = run(mgr.policy(a.project))
    if ctx.json:
        out(json.dumps(None if policy is None else policy.model_dump(), indent=2))
    else:
        _show(policy, a.project)
    return EXIT_OK


def render_forget(res: ForgetResult) -> list[str]:
    rows = []
    for d in res.decisions:
        if d.keep:
            action = "keep"
        elif d.backup_id in res.purged:
            action = "delete"
        else:
            action = "remove"
        rows.append([d.backup_id, d.type.value, d.status.value, action, ", ".join(d.reasons)])
    # removed by an earlier forget, their grace period over: judged by no rule now, but
    # deleted for good by this run, so named as every other (the preview names what goes)
    judged = {d.backup_id for d in res.decisions}
    expired = [i for i in res.purged if i not in judged]
    rows += [[i, "-", "removed", "delete", "grace period over"] for i in expired]
    lines = table(["ID", "TYPE", "STATUS", "ACTION", "REASONS"], rows, right=set())
    kept = sum(1 for d in res.decisions if d.keep)
    verb = "Would remove" if res.dry_run else "Removed"
    lines.append(
        f"{verb} {plural(len(res.removed) + len(res.purged), 'backup')} of "
        f"{len(res.decisions) + len(expired)}, keeping {kept}."
    )
    if res.removed:
        lines.append(
            f"  Removed backups stay restorable for {res.policy.grace_hours}h (undelete brings "
            "them back); their space is reclaimed by the first forget after that."
        )
    if res.reinstated:
        lines.append(
            f"  Listed again, not deleted: {', '.join(res.reinstated)} (the newest completed "
            "backup: the newer ones that made retention remove it were deleted)."
        )
    if res.bytes_freed is not None:
        lines.append(f"  Space their removal frees: {size(res.bytes_freed)}.")
    if not res.dry_run and res.purged:
        lines.append(
            f"  Deleted {plural(len(res.purged), 'backup')}: reclaimed "
            f"{size(res.bytes_reclaimed)} ({plural(res.packs_deleted, 'pack')} deleted, "
            f"{res.packs_rewritten} rewritten)."
        )
    return lines


def cmd_forget(ctx: Context) -> int:
    a = ctx.args
    from core.retention import Policy

    rules = given_rules(a)
    policy = Policy(**rules) if rules else None
    with ctx.progress() as bar:
        res: ForgetResult = run(
            ctx.manager.forget(
                a.project, policy, dry_run=a.dry_run, max_unused=a.max_unused, progress=bar
            )
        )
    code = EXIT_OK if res.reclaim_refused is None else EXIT_ERROR
    if ctx.json:
        ctx.emit(res)
        return code
    out("\n".join(render_forget(res)))
    if res.unreadable:
        shown = first_ids(res.unreadable)
        error_line(
            f"{plural(len(res.unreadable), 'backup')} of {a.project} judged by no rule and "
            f"kept: metadata.json cannot be read ({shown}); `nexus-backup check {a.project}` "
            "says why",
            kind="warning",
        )
    if res.reclaim_refused is not None:
        error_line(f"space not reclaimed: {res.reclaim_refused}")
    return code


def cmd_protect(ctx: Context) -> int:
    return _mark(ctx, "protect")


def cmd_unprotect(ctx: Context) -> int:
    return _mark(ctx, "unprotect")


def cmd_undelete(ctx: Context) -> int:
    a = ctx.args
    if a.backup_id is None:  # the list of what can be brought back
        removed: list[BackupMetadata] = run(ctx.manager.removed(a.project))
        if ctx.json:
            ctx.emit(removed)
            return EXIT_OK
        if not removed:
            out(f"No backup of project {a.project} is in its grace period.")
            return EXIT_OK
        rows = [
            [m.id, ago(m.created_at), fmt_tags(m.tags), f"{m.purge_after:%Y-%m-%d %H:%M} UTC"]
            for m in removed
        ]
        out("\n".join(table(["ID", "CREATED", "TAGS", "RESTORABLE UNTIL"], rows, right=set())))
        return EXIT_OK
    return _mark(ctx, "undelete")


def _mark(ctx: Context, op: str) -> int:
    a, mgr = ctx.args, ctx.manager
    fn = {"protect": mgr.protect, "unprotect": mgr.unprotect, "undelete": mgr.undelete}[op]
    meta: BackupMetadata = run(fn(a.project, a.backup_id))
    if ctx.json:
        ctx.emit(meta)
        return EXIT_OK
    done = {
        "protect": "is protected: no retention rule removes it, delete refuses it",
        "unprotect": "is no longer protected",
        "undelete": "is listed again (the next forget judges it again: protect it to keep it)",
    }[op]
    out(f"Backup {meta.id} of project {meta.project_id} {done}")
    return EXIT_OK
