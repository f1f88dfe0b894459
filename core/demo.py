"""Sample data for first looks, screenshots and snapshot tests, made by the real core.

Four projects from generated directories, several backups each (full, incremental after a
change, a snapshot, a named checkpoint, tags), a verify, and one backup left FAILED the way
a crash leaves it (the core's recovery marks it). Backups are spread over the last days so
the table reads like a real history: ids and times follow a plan (the core's id function is
swapped for the plan's while building), and the log lines are re-stamped to match.

With a fixed `now`, everything shown is deterministic: ids, times, sizes, the log.

It lives in the engine, not in a face, because it writes what no face may: the durations
the engine measures (by a monotonic clock, so not deterministic) and the RUNNING metadata
of a backup a crash left behind, through `Repository`. The TUI and the CLI only call
`build_demo`.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.logger import LogRecord
from core.manager import BackupManager
from core.models import BackupMetadata, BackupStatus, BackupType, CreateRequest, PhaseTimings
from core.repo.repository import Repository

DEMO_NOW = datetime(2026, 11, 29, 15, 0, 0, tzinfo=UTC)
SOURCES = "demo-data"


@dataclass
class _Plan:
    """The timeline the ids and times follow."""

    at: datetime = DEMO_NOW
    ids: dict[str, datetime] = field(default_factory=dict)
    verify_at: dict[str, datetime] = field(default_factory=dict)

    def now(self) -> datetime:
        """The manager's clock: the planned time of the backup being made."""
        return self.at

    def new_id(self, now: datetime | None = None) -> str:
        stamp = self.at
        while True:
            digest = hashlib.sha256(f"{stamp.isoformat()}".encode()).hexdigest()[:6]
            backup_id = f"{stamp:%Y%m%d-%H%M%S}-{digest}"
            if backup_id not in self.ids:
                self.ids[backup_id] = stamp
                return backup_id
            stamp += timedelta(seconds=1)


def _write(path: Path, data: bytes | str, mtime: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    ts = mtime.timestamp()
    os.utime(path, (ts, ts))


def _settle_dirs(base: Path, when: datetime) -> None:
    """Directory mtimes change as files are added: pin them, so browsing is deterministic."""
    ts = when.timestamp()
    for dirpath, _dirs, _files in os.walk(base, topdown=False):
        os.utime(dirpath, (ts, ts))


def _text(rng: random.Random, words: int) -> str:
    vocab = [
        "backup",
        "restore",
        "chunk",
        "pack",
        "index",
        "manifest",
        "project",
        "table",
        "log",
        "tail",
        "filter",
        "deploy",
        "release",
        "customer",
        "invoice",
        "order",
        "schema",
        "query",
        "user",
        "session",
        "cache",
        "config",
        "service",
    ]
    # Each word drawn as `rng.choice(vocab)` draws it (the same words for the same seed, so
    # the demo's sizes and screens stay put), without its three calls a word: the demo is
    # built while its user waits for the first screen.
    n = len(vocab)
    k = n.bit_length()
    bits = rng.getrandbits
    lines, line = [], []
    for _ in range(words):
        r = bits(k)
        while r >= n:
            r = bits(k)
        line.append(vocab[r])
        if len(line) >= 12:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def _fill(kind: str, base: Path, rng: random.Random, when: datetime) -> None:
    if kind == "website":
        _write(base / "index.html", "<html><body><h1>Shop</h1></body></html>\n" * 40, when)
        _write(base / "about.html", "<html><body>About us</body></html>\n" * 30, when)
        _write(base / "css" / "site.css", "body { color: #222; }\n" * 300, when)
        _write(base / "js" / "app.js", "console.log('hello');\n" * 500, when)
        for i in range(6):
            _write(
                base / "img" / f"photo-{i:02d}.png", rng.randbytes(rng.randint(8, 40) * 1024), when
            )
        _write(base / "README.md", _text(rng, 300), when)
    elif kind == "database":
        for name in ("customers", "orders", "invoices", "products"):
            _write(base / "dumps" / f"{name}.sql", _text(rng, 6000), when)
        _write(base / "config" / "postgresql.conf", "shared_buffers = 128MB\n" * 20, when)
        _write(base / "config" / "pg_hba.conf", "local all all peer\n" * 10, when)
    elif kind == "photos":
        for year in (2024, 2025):
            for i in range(5):
                _write(
                    base / str(year) / f"IMG_{year}_{i:03d}.jpg",
                    rng.randbytes(rng.randint(30, 90) * 1024),
                    when,
                )
        _write(base / "albums.txt", _text(rng, 200), when)
    else:  # notes
        for topic in ("ideas", "meetings", "todo", "reading", "travel"):
            _write(base / f"{topic}.md", _text(rng, 800), when)
        _write(base / "archive" / "2025.md", _text(rng, 1500), when)


#: The demo's phase timings, as shares of each backup's duration (the engine measures them).
DEMO_PHASES = {
    "scan": 0.08,
    "read": 0.3,
    "chunk_hash": 0.25,
    "compress": 0.2,
    "store": 0.12,
    "index": 0.02,
    "manifest": 0.03,
    "validate": 0.02,
    "read_pass": 0.85,
}


def _restamp(repo: Repository, meta: BackupMetadata, at: datetime) -> BackupMetadata:
    """Give a finished backup (stamped at `at` by the manager's clock) a plausible,
    deterministic duration, which the engine measures."""
    duration = round(0.4 + meta.stats.bytes_read / 40e6, 2)
    meta.completed_at = at + timedelta(seconds=duration)
    meta.stats.duration_seconds = duration
    meta.stats.throughput_bytes_per_second = round(meta.stats.bytes_read / duration, 1)
    if meta.stats.phases is not None:  # measured too: shares of the duration, as plausible
        meta.stats.phases = PhaseTimings(
            **{f"{k}_seconds": round(duration * share, 3) for k, share in DEMO_PHASES.items()},
            workers=4,
        )
    repo.write_metadata(meta)
    return meta


async def build_demo(root: Path, *, now: datetime | None = None) -> None:
    """Fill `root` with sample projects and backups (sources under `root/demo-data`)."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    root = Path(root)
    sources = root / SOURCES
    plan = _Plan(at=now)
    mgr = BackupManager(root, new_id=plan.new_id, clock=plan.now)
    rng = random.Random(20261129)

    async def backup(
        project: str,
        kind: BackupType,
        at: datetime,
        *,
        tags: dict[str, str] | None = None,
        name: str | None = None,
    ) -> BackupMetadata:
        plan.at = at
        _settle_dirs(sources / project, at - timedelta(hours=1))
        req = CreateRequest(
            project_id=project,
            backup_type=kind,
            data_dir=str(sources / project),
            tags=tags or {},
            name=name,
            host="web-01",
            user="deploy",
        )
        meta = await mgr.create(req)
        return _restamp(Repository(mgr.root, project), meta, at)

    def ago(**delta: float) -> datetime:
        return now - timedelta(**delta)

    for project, start in (
        ("website", ago(days=9)),
        ("database", ago(days=8)),
        ("photos", ago(days=5)),
        ("notes", ago(hours=6)),
    ):
        _fill(project, sources / project, rng, start - timedelta(hours=1))
        await mgr.create_project(project, str(sources / project))

    # Each project's story in its order, the projects taking turns: a backup reads a file
    # changed in the last 20 ms only once it has stood still that long (`backup._settled`),
    # so each change is made a round ahead of the backup that reads it, while other
    # projects' backups run. The random contents are drawn in a fixed order first.
    site, db = sources / "website", sources / "database"
    orders = {days: _text(rng, 6000 + days) for days in (7, 1)}
    photo = rng.randbytes(50 * 1024)

    await backup("website", BackupType.FULL, ago(days=9), tags={"env": "prod"})
    await backup("database", BackupType.FULL, ago(days=8), tags={"schedule": "nightly"})
    await backup("photos", BackupType.FULL, ago(days=5), tags={"trip": "alps"})
    await backup("notes", BackupType.FULL, ago(hours=4))

    _write(site / "css" / "site.css", "body { color: #0a0; }\n" * 320, ago(days=6, hours=1))
    _write(db / "dumps" / "orders.sql", orders[7], ago(days=7, hours=1))
    _write(sources / "photos" / "2025" / "IMG_2025_099.jpg", photo, ago(days=1, hours=2))
    await backup("website", BackupType.INCREMENTAL, ago(days=6), tags={"env": "prod"})
    await backup("database", BackupType.INCREMENTAL, ago(days=7), tags={"schedule": "nightly"})
    await backup("website", BackupType.CHECKPOINT, ago(days=3), name="before-redesign")

    _write(site / "index.html", "<html><body><h1>New shop</h1></body></html>\n" * 45, ago(hours=3))
    _write(site / "sale.html", "<html><body>Sale!</body></html>\n" * 20, ago(hours=3))
    _write(db / "dumps" / "orders.sql", orders[1], ago(days=1, hours=1))
    await backup("database", BackupType.INCREMENTAL, ago(days=1), tags={"schedule": "nightly"})
    # after the database's of the same time: the same time makes the same id, and the later
    # of the two takes the next second's (`_Plan.new_id`)
    await backup("photos", BackupType.SNAPSHOT, ago(days=1), tags={"trip": "alps"})
    latest_site = await backup(
        "website",
        BackupType.INCREMENTAL,
        ago(hours=2),
        tags={"env": "prod", "ticket": "WEB-42"},
    )

    plan.at = ago(hours=1)
    result = await mgr.verify("website", latest_site.id)
    site_repo = Repository(mgr.root, "website")
    site_repo.write_verify(result.model_copy(update={"duration_seconds": 0.3}))
    plan.verify_at[latest_site.id] = ago(hours=1)

    # A nightly backup that a crash cut short: left RUNNING by a process that is gone.
    failed_at = ago(minutes=40)
    plan.at = failed_at
    crashed = BackupMetadata(
        id=plan.new_id(),
        project_id="database",
        type=BackupType.INCREMENTAL,
        status=BackupStatus.RUNNING,
        created_at=failed_at,
        completed_at=failed_at + timedelta(minutes=5),  # as the list shows it once judged dead
        tags={"schedule": "nightly"},
    )
    Repository(mgr.root, "database").write_metadata(crashed)
    mgr.logger.info(
        "database",
        "create",
        f"incremental backup of {sources / 'database'} started",
        backup_id=crashed.id,
    )

    # A manager opening the project afresh recovers it: FAILED, "interrupted".
    fresh = BackupManager(root)
    await fresh.list("database")
    plan.verify_at[crashed.id] = failed_at + timedelta(minutes=5)
    _restamp_logs(mgr, plan, now)


def _restamp_logs(mgr: BackupManager, plan: _Plan, now: datetime) -> None:
    """Re-date the log lines written while building so they tell the planned story."""
    logs = mgr.logger.logs_dir
    home = os.path.expanduser("~")
    for project in ("website", "database", "photos", "notes"):
        records: list[LogRecord] = []
        for path in sorted(logs.glob(f"{project}_*.log")):
            day = path.stem.rpartition("_")[2]
            records += mgr.logger.read(project, day)
            mgr.logger.remove(project, day)
        first = min(
            (plan.ids[r.backup_id] for r in records if r.backup_id in plan.ids), default=now
        )
        last = first - timedelta(minutes=5)
        step: dict[str, int] = {}
        out: list[LogRecord] = []
        for r in records:
            if r.backup_id in plan.ids:
                base = plan.ids[r.backup_id]
                if r.operation in ("verify", "recover") and r.backup_id in plan.verify_at:
                    base = plan.verify_at[r.backup_id]
                n = step.get(f"{r.operation}{r.backup_id}", 0)
                step[f"{r.operation}{r.backup_id}"] = n + 1
                when = base + timedelta(seconds=n)
            else:
                when = last + timedelta(seconds=1)
            last = when
            message = r.message
            if home not in ("", "/"):
                message = re.sub(rf"(?<![^\s'\"]){re.escape(home)}/", "~/", message)
            out.append(LogRecord(when, r.level, project, r.operation, r.backup_id, message))
        out.sort(key=lambda r: r.time)
        for r in out:
            mgr.logger.append(r)
