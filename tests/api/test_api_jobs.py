"""The job runner on its own, with a stand-in manager: 202 on `on_created`, early errors
raised to the request, nothing lost at shutdown, finished jobs remembered within a bound."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from api import jobs as jobs_module
from api.events import EventHub
from api.jobs import JobRunner
from core.errors import Busy, Conflict
from core.models import (
    BackupMetadata,
    BackupStatus,
    BackupType,
    CreateRequest,
    RestoreRequest,
    RestoreResult,
)


class StandIn:
    """Just enough of BackupManager: create waits on `release` after on_created."""

    def __init__(self, *, fail_early: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.fail_early = fail_early
        self.cancelled = False

    async def create(self, req, *, progress=None, on_created=None):
        if self.fail_early:
            raise self.fail_early
        meta = BackupMetadata(
            id="b1", project_id=req.project_id, type=BackupType.FULL, created_at=datetime.now(UTC)
        )
        on_created(meta)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return meta.model_copy(update={"status": BackupStatus.COMPLETED})

    async def restore(self, req, *, progress=None):
        if self.fail_early:
            raise self.fail_early
        await self.release.wait()
        return RestoreResult(
            project_id=req.project_id, backup_id=req.backup_id, restore_dir="/t", dry_run=False
        )

    async def info(self, project_id, backup_id):
        raise Conflict("not needed")


CREATE = CreateRequest(project_id="p", data_dir="/d")
RESTORE = RestoreRequest(project_id="p", backup_id="b1", restore_dir="/t")


def run(coro):
    return asyncio.run(coro)


def test_create_answers_with_pending_metadata_and_goes_on():
    async def scenario():
        mgr = StandIn()
        runner = JobRunner(mgr, EventHub())
        meta = await runner.start_create(CREATE)
        assert meta.id == "b1" and meta.status == "pending"
        assert runner.running == 1
        mgr.release.set()
        while runner.running:
            await asyncio.sleep(0.01)

    run(scenario())


def test_early_create_error_is_raised_to_the_request():
    async def scenario():
        runner = JobRunner(StandIn(fail_early=Busy("project p is busy")), EventHub())
        with pytest.raises(Busy):
            await runner.start_create(CREATE)

    run(scenario())


def test_shutdown_cancels_running_work_and_logs_it(caplog):
    async def scenario():
        mgr = StandIn()
        runner = JobRunner(mgr, EventHub())
        await runner.start_create(CREATE)
        with caplog.at_level(logging.INFO, logger="nexus_backup.api"):
            await runner.aclose(timeout=5)
        assert mgr.cancelled and runner.running == 0

    run(scenario())
    assert any("cancelled" in m for m in caplog.messages)


def test_restore_job_lifecycle_and_early_errors():
    async def scenario():
        mgr = StandIn()
        runner = JobRunner(mgr, EventHub())
        job = await runner.start_restore(RESTORE)
        assert job.status == "running" and runner.get(job.job_id) is job
        mgr.release.set()
        while job.status == "running":
            await asyncio.sleep(0.01)
        assert job.status == "succeeded" and job.result is not None and job.finished_at

        failing = JobRunner(StandIn(fail_early=Conflict("backup b1 is failed")), EventHub())
        with pytest.raises(Conflict):
            await failing.start_restore(RESTORE)
        assert not failing._jobs  # the client never learnt of it

    run(scenario())


def test_finished_jobs_are_forgotten_oldest_first(monkeypatch):
    monkeypatch.setattr(jobs_module, "MAX_JOBS", 3)

    async def scenario():
        mgr = StandIn()
        mgr.release.set()
        runner = JobRunner(mgr, EventHub())
        ids = []
        for _ in range(5):
            job = await runner.start_restore(RESTORE)
            ids.append(job.job_id)
            while job.status == "running":
                await asyncio.sleep(0.01)
        assert [runner.get(i) is not None for i in ids] == [False, False, True, True, True]

    run(scenario())


def test_beyond_the_limit_jobs_queue_and_start_in_order():
    async def scenario():
        mgr = StandIn()
        runner = JobRunner(mgr, EventHub(), max_running=1)
        first = await runner.start_restore(RESTORE)
        second = await runner.start_restore(RESTORE)
        third = await runner.start_create(CREATE)
        assert first.status == "running"
        assert second.status == "queued" and third.status == "queued" and third.kind == "create"
        assert runner.slots.busy == 1 and runner.slots.waiting == 2
        mgr.release.set()
        while runner.running:
            await asyncio.sleep(0.01)
        assert [j.status for j in (first, second, third)] == ["succeeded"] * 3
        assert first.finished_at <= second.started_at <= second.finished_at <= third.started_at
        assert third.backup_id == "b1" and third.backup.status == BackupStatus.COMPLETED
        assert runner.slots.busy == 0

    run(scenario())


def test_a_queued_job_cancelled_at_shutdown_says_so():
    async def scenario():
        mgr = StandIn()
        runner = JobRunner(mgr, EventHub(), max_running=1)
        await runner.start_restore(RESTORE)
        queued = await runner.start_restore(RESTORE)
        await runner.aclose(timeout=5)
        assert queued.status == "failed" and queued.error.type == "cancelled"
        assert runner.slots.busy == 0 and runner.slots.waiting == 0

    run(scenario())


def test_slots_waiters_that_give_up_never_leak_a_slot():
    from api.pools import Slots

    async def scenario():
        slots = Slots(1)
        await slots.take()
        gave_up = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        assert slots.waiting == 1
        gave_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gave_up
        assert slots.waiting == 0 and slots.busy == 1
        late = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        slots.release()  # handed over to `late` ...
        late.cancel()  # ... which is cancelled before it could run
        with pytest.raises(asyncio.CancelledError):
            await late
        assert slots.busy == 0 and slots.waiting == 0
        assert slots.try_take() and not slots.try_take()

    run(scenario())
