"""The manager's clock: every time the engine stamps (a backup's created_at and completed_at,
a checkpoint's, a verify's and a check's checked_at, the completed_at of a backup a crash
left behind) is read from the clock it was given, so a demo can be deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, RestoreRequest

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_every_stamp_comes_from_the_managers_clock(root: Path, data_dir: Path, tmp_path):
    clock = Clock()
    mgr = BackupManager(root, clock=clock)
    meta = await mgr.create(CreateRequest(project_id="c", data_dir=str(data_dir)))
    assert meta.created_at == meta.completed_at == T0
    assert (await mgr.info("c", meta.id)).metadata.created_at == T0  # as written

    clock.now = T0 + timedelta(hours=1)
    assert (await mgr.verify("c", meta.id)).checked_at == clock.now
    assert (await mgr.check("c")).checked_at == clock.now

    # a restore over a changed target: the checkpoint it takes is stamped by the clock too
    target = tmp_path / "target"
    target.mkdir()
    (target / "mine.txt").write_text("my work")
    clock.now = T0 + timedelta(hours=2)
    req = RestoreRequest(
        project_id="c", backup_id=meta.id, restore_dir=str(target), delete_extra=True
    )
    res = await mgr.restore(req)
    checkpoint = (await mgr.info("c", res.checkpoint_id)).metadata
    assert checkpoint.created_at == checkpoint.completed_at == clock.now


async def test_a_backup_a_crash_left_running_is_failed_at_the_clocks_time(
    root: Path, data_dir: Path
):
    """Recovery (run by the next writing command) stamps completed_at with the clock."""
    clock = Clock()
    mgr = BackupManager(root, clock=clock)
    meta = await mgr.create(CreateRequest(project_id="c", data_dir=str(data_dir)))
    # what a killed process leaves: the metadata still RUNNING, nothing holding its lock
    path = root / "backups" / "c" / f"backup_{meta.id}" / "metadata.json"
    left = meta.model_copy(update={"status": BackupStatus.RUNNING, "completed_at": None})
    path.write_text(left.model_dump_json())
    clock.now = T0 + timedelta(days=1)
    assert await mgr.recover("c") == 1
    judged = (await mgr.info("c", meta.id)).metadata
    assert judged.status == BackupStatus.FAILED and judged.completed_at == clock.now


async def test_without_a_clock_the_stamps_are_now(root: Path, data_dir: Path):
    before = datetime.now(UTC)
    meta = await BackupManager(root).create(CreateRequest(project_id="c", data_dir=str(data_dir)))
    assert before <= meta.created_at <= meta.completed_at <= datetime.now(UTC)
