"""core.scheduler.run_due on every engine store (local, memory, S3, encrypted): the last run
is kept in the repository (sealed like the policy), retention and verify run as steps, a run
lock held elsewhere leaves the project to its holder, and what was backed up restores."""

from __future__ import annotations

import asyncio
import filecmp
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.manage import runs
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.ops.progress import OperationContext
from core.retention import Policy
from core.scheduler import run_due

T0 = datetime(2026, 6, 1, 10, 20, tzinfo=UTC)


def _ctx(op: str = "create") -> OperationContext:
    return OperationContext(op, "p", None)


def test_run_due_on_every_store(engine: BackupManager, data: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(runs, "RUN_LOCK_WAIT", 0.2)
    (data / "a.bin").write_bytes(b"one" * 5000)
    req = CreateRequest(project_id="p", data_dir=str(data), created_at=T0)
    engine.create_blocking(req, _ctx())
    policy = Policy(keep_last=2, schedule="hourly", schedule_verify="full")
    engine.set_policy_blocking("p", policy)

    def due(at: datetime):
        (outcome,) = asyncio.run(run_due(engine, ["p"], now=at))
        return outcome

    assert due(T0 + timedelta(minutes=30)).status == "not-due"
    (data / "a.bin").write_bytes(b"two" * 5000)
    first = due(T0 + timedelta(minutes=41))  # 11:01
    assert first.status == "succeeded", first
    assert [s.name for s in first.steps] == ["backup", "retention", "verify"]
    assert first.scheduled_for == datetime(2026, 6, 1, 11, tzinfo=UTC)
    run = engine.schedule_state_blocking("p", T0).last_run
    assert run is not None and run.status == "succeeded" and run.backup_id == first.backup_id
    assert due(T0 + timedelta(minutes=50)).status == "not-due"
    # another run-due holds the run lock: this one leaves the project to it
    with engine.run_lock("p"):
        busy = due(T0 + timedelta(hours=1, minutes=45))
    assert busy.status == "busy" and busy.ok
    third = due(T0 + timedelta(hours=1, minutes=46))
    assert third.status == "succeeded"
    assert len(engine.list_blocking("p")) == 2  # keep_last 2 applied
    target = tmp_path / "restored"
    engine.restore_blocking(
        RestoreRequest(project_id="p", backup_id=first.backup_id, restore_dir=str(target)),
        _ctx("restore"),
    )
    assert filecmp.cmp(data / "a.bin", target / "a.bin", shallow=False)
    summary = engine.projects_blocking(["p"])[0]
    assert summary.schedule == "hourly" and summary.last_run.backup_id == third.backup_id


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_a_run_left_running_by_a_dead_process_reads_interrupted(engine, data) -> None:
    """last_run.json says running but no run lock is held (the process was killed): the
    faces see it failed, and the next slot runs."""
    from core.models import LastRun

    (data / "f").write_text("x")
    engine.create_blocking(CreateRequest(project_id="p", data_dir=str(data), created_at=T0), _ctx())
    engine.set_policy_blocking("p", Policy(schedule="hourly"))
    slot = datetime(2026, 6, 1, 11, tzinfo=UTC)
    engine.record_run_blocking("p", LastRun(started_at=slot, status="running", scheduled_for=slot))
    state = engine.schedule_state_blocking("p", slot + timedelta(minutes=5))
    assert state.last_run.status == "failed" and "interrupted" in state.last_run.error
    assert not state.due  # that slot was started: the next one runs
    (outcome,) = asyncio.run(run_due(engine, ["p"], now=slot + timedelta(hours=1, minutes=1)))
    assert outcome.status == "succeeded"


def test_a_backup_running_by_hand_is_not_joined_by_a_scheduled_one(engine, data) -> None:
    """A create holds the project's lock (here: taken as a create takes it): run-due leaves
    the project (busy, not a failure) and runs it at its next call, once the backup ended."""
    from core.manage.locking import locked

    (data / "f").write_text("x")
    engine.create_blocking(CreateRequest(project_id="p", data_dir=str(data), created_at=T0), _ctx())
    engine.set_policy_blocking("p", Policy(schedule="hourly"))
    at = T0 + timedelta(hours=1)
    with locked(engine._repo("p"), "create", exclusive=False, backup_id="20260601-110000-aaaaaa"):
        (busy,) = asyncio.run(run_due(engine, ["p"], now=at))
    assert busy.status == "busy" and "a backup of it is running" in busy.message
    assert len(engine.list_blocking("p")) == 1
    (ran,) = asyncio.run(run_due(engine, ["p"], now=at + timedelta(minutes=5)))
    assert ran.status == "succeeded" and len(engine.list_blocking("p")) == 2
