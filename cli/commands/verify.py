"""`verify`: check one backup's data (every chunk and hash; `--quick`: chunks present), or
every backup with `--all`; exit 4 when damage is found, naming the damaged files."""

from __future__ import annotations

from datetime import UTC, datetime

from cli.context import EXIT_DAMAGED, EXIT_OK, Context, UsageError, run
from cli.render import clean, duration, name, out, plural, size
from core.models import VerifyResult


def cmd_verify(ctx: Context) -> int:
    a = ctx.args
    if a.all and a.backup_id:
        raise UsageError("verify: give either BACKUP_ID or --all, not both")
    if not a.all and not a.backup_id:
        raise UsageError('verify: give a BACKUP_ID (or "latest"), or --all')
    mgr = ctx.manager

    async def verify_all() -> list[VerifyResult]:
        results = await mgr.verify_all(a.project, quick=a.quick, progress=bar)
        for backup_id in await mgr.damaged_metadata(a.project):
            results.append(
                VerifyResult(
                    project_id=a.project,
                    backup_id=backup_id,
                    quick=a.quick,
                    ok=False,
                    checked_at=datetime.now(UTC),
                    checksum_ok=False,
                    errors=["metadata.json is missing or damaged"],
                )
            )
        return results

    with ctx.progress() as bar:
        if a.all:
            results = run(verify_all())
        else:
            backup_id = a.backup_id
            results = [run(mgr.verify(a.project, backup_id, quick=a.quick, progress=bar))]
    damaged = any(not r.ok for r in results)
    code = EXIT_DAMAGED if damaged else EXIT_OK
    if ctx.json:
        ctx.emit(results if a.all else results[0])
        return code
    if a.all and not results:
        out(f"No completed backups to verify in project {a.project}.")
        return code
    lines: list[str] = []
    for r in results:
        lines += verify_lines(r)
    if a.all:
        bad = sum(1 for r in results if not r.ok)
        lines.append(
            f"{plural(len(results), 'backup')} verified: " + (f"{bad} DAMAGED" if bad else "all ok")
        )
    out("\n".join(lines))
    return code


def verify_lines(r: VerifyResult) -> list[str]:
    kind = "quick check, chunks present" if r.quick else "full check"
    counts = f"{plural(r.files_checked, 'file')}, {plural(r.chunks_checked, 'chunk')}"
    if not r.quick:
        counts += f", {size(r.bytes_checked)}"
    counts += f" in {duration(r.duration_seconds)}"
    if r.ok:
        return [f"Backup {r.backup_id}: OK ({kind}: {counts})"]
    lines = [f"Backup {r.backup_id}: DAMAGED ({kind}: {counts})"]
    if not r.checksum_ok:
        lines.append("  manifest checksum does not match")
    if r.damaged_files:
        lines.append(f"  {plural(len(r.damaged_files), 'damaged file')}:")
        lines += [f"    {name(d.path)}: {clean(d.reason)}" for d in r.damaged_files]
    lines += [f"  error: {clean(e)}" for e in r.errors]
    return lines
