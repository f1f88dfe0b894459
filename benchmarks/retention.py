"""Retention over a large project: `forget` (its preview, then the real run with its one
reclaim) over a project of N backups (default 1,000), small files, made hourly with
`create --time` semantics (CreateRequest.created_at) in this process.

    .venv/bin/python benchmarks/retention.py [--backups 1000] [--json out.json]

The policy is a common one: --keep-daily 7 --keep-weekly 4 --keep-monthly 6, grace 0 (so
the removed backups are deleted and their space reclaimed in the same run)."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.manager import BackupManager
from core.models import CreateRequest
from core.ops.progress import OperationContext
from core.retention import Policy


def build(root: Path, data: Path, n: int, rng: random.Random) -> tuple[BackupManager, float]:
    """N backups an hour apart of a directory of 20 small files, one rewritten each time."""
    mgr = BackupManager(root)
    for i in range(20):
        (data / f"f{i:02}.txt").write_bytes(rng.randbytes(2_000))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    for i in range(n):
        (data / f"f{i % 20:02}.txt").write_bytes(rng.randbytes(2_000))
        req = CreateRequest(
            project_id="bench", data_dir=str(data), created_at=start + timedelta(hours=i)
        )
        mgr.create_blocking(req, OperationContext("create", "bench", None))
    return mgr, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backups", type=int, default=1000)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    rng = random.Random(13)
    with tempfile.TemporaryDirectory(prefix="nexus-retention-") as tmp:
        root, data = Path(tmp) / "root", Path(tmp) / "data"
        data.mkdir()
        mgr, built = build(root, data, args.backups, rng)
        policy = Policy(keep_daily=7, keep_weekly=4, keep_monthly=6, grace_hours=0)
        stored = mgr._repo("bench").stored_bytes()
        t0 = time.perf_counter()
        preview = mgr.forget_blocking("bench", policy, dry_run=True)
        t_preview = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = mgr.forget_blocking("bench", policy)
        t_forget = time.perf_counter() - t0
        after = mgr._repo("bench").stored_bytes()
    result = {
        "backups": args.backups,
        "build_seconds": round(built, 2),
        "kept": sum(1 for d in done.decisions if d.keep),
        "removed": len(done.purged),
        "preview_seconds": round(t_preview, 2),
        "forget_seconds": round(t_forget, 2),
        "bytes_before": stored,
        "bytes_after": after,
        "bytes_reclaimed": done.bytes_reclaimed,
        "bytes_freed_estimate": preview.bytes_freed,
        "packs_deleted": done.packs_deleted,
        "packs_rewritten": done.packs_rewritten,
        "load": os.getloadavg()[0],
    }
    for key, value in result.items():
        print(f"{key:22} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
