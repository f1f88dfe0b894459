"""The long operations (create, restore, copy, delete) run at most `max_running` at once,
creates, restores and copies as server-side tasks that outlive their request.

A request starts the task and answers as soon as there is something to say (the PENDING
metadata of a backup, a restore's or a copy's job id); when every slot is taken the operation
waits its turn as a "queued" job the client polls. The runner keeps a reference to every task,
so none is garbage-collected mid-flight, logs how each one ended, so no exception is lost, and
cancels them at shutdown (a cancelled create ends FAILED "cancelled" in the core)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from api.errors import ApiError, error_type
from api.events import EventHub
from api.pools import MAX_RUNNING, Slots
from api.schemas import Job, JobError, RestoreOutcome
from core.display import name
from core.errors import Damaged, NexusError
from core.models import (
    BackupMetadata,
    CopyResult,
    CreateRequest,
    ProgressEvent,
    RestoreRequest,
    RestoreResult,
)
from core.service import Engine

log = logging.getLogger("nexus_backup.api")
T = TypeVar("T")

#: How long a create may take to write its PENDING metadata before the request gives up
#: waiting (the backup itself goes on).
START_TIMEOUT = 30.0
#: How long a restore request waits for the restore to show progress, so that errors found at
#: once (busy project, damaged backup) are answered directly instead of only in the job.
EARLY_ERROR_WINDOW = 0.5
#: Finished jobs remembered for polling; the oldest are forgotten first.
MAX_JOBS = 1000


def _now() -> datetime:
    return datetime.now(UTC)


def _new_job(kind: str, project_id: str, **fields: Any) -> Job:
    return Job(
        job_id=secrets.token_hex(8), kind=kind, project_id=project_id, created_at=_now(), **fields
    )


def _fail(job: Job, exc: BaseException) -> None:
    """Record on the job how it ended, in the terms its request would have been answered."""
    job.status = "failed"
    if isinstance(exc, NexusError):
        job.error = JobError(status_code=exc.http_status, type=error_type(exc), msg=str(exc))
    elif isinstance(exc, ApiError):
        job.error = JobError(status_code=exc.status_code, type=exc.type, msg=exc.msg)
    elif isinstance(exc, asyncio.CancelledError):
        job.error = JobError(status_code=503, type="cancelled", msg="cancelled (server stop)")
    else:
        job.error = JobError(
            status_code=500, type="internal", msg="internal error (logged on the server)"
        )


class JobRunner:
    def __init__(self, mgr: Engine, hub: EventHub, *, max_running: int = MAX_RUNNING) -> None:
        self.mgr = mgr
        self.hub = hub
        self.slots = Slots(max_running)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    # -- plumbing

    def _spawn(self, coro: Coroutine[Any, Any, T], label: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=label)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            log.info("%s: cancelled", task.get_name())
            return
        exc = task.exception()
        if isinstance(exc, NexusError):
            log.warning("%s failed: %s", task.get_name(), exc)
        elif exc is not None:
            log.error("%s failed with an internal error", task.get_name(), exc_info=exc)

    def _in_loop(
        self, loop: asyncio.AbstractEventLoop, thread: int, fn: Callable[[], None]
    ) -> None:
        """Run `fn` in the server's loop, whichever thread the core calls back from."""
        if threading.get_ident() == thread:
            fn()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn)

    def _progress(self, job: Job | None = None) -> Callable[[ProgressEvent], None]:
        def report(event: ProgressEvent) -> None:
            if job is not None:
                job.progress = event
            self.hub.publish(event.project_id, "progress", event.model_dump(mode="json"))

        return report

    def publish_progress(self, event: ProgressEvent) -> None:
        """A progress callback for operations that are not jobs (delete)."""
        self.hub.publish(event.project_id, "progress", event.model_dump(mode="json"))

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def _turn(
        self, job: Job | None, place: asyncio.Future[None], work: Callable[[], Awaitable[T]]
    ) -> T:
        """`work()` once `place` (from `slots.enqueue`) has its slot; then the slot is freed."""
        await self.slots.wait(place)
        try:
            if job is not None:
                job.status = "running"
                job.started_at = _now()
            return await work()
        finally:
            self.slots.release()

    def _in_turn(
        self,
        label: str,
        job: Job | None,
        coro: Coroutine[Any, Any, T],
        place: asyncio.Future[None],
    ) -> asyncio.Task[T]:
        """Spawn the task of an operation holding `place`. Should it end before its coroutine
        ever ran (cancelled at shutdown), its place is given up and a job says it was
        cancelled."""
        task = self._spawn(coro, label)

        def ended(_: asyncio.Task[Any]) -> None:
            self.slots.forget(place)
            if job is not None and job.status == "queued":
                _fail(job, asyncio.CancelledError())
                job.finished_at = _now()

        task.add_done_callback(ended)
        return task

    async def run_long(self, work: Callable[[], Awaitable[T]]) -> T:
        """A long operation answered in its request (delete): it waits for a slot."""
        return await self._turn(None, self.slots.enqueue(), work)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Cancel what is still running and give it `timeout` seconds to record that."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # -- create

    async def start_create(self, req: CreateRequest) -> BackupMetadata | Job:
        """Start a backup; return its PENDING metadata as soon as the core has written it,
        or, when every slot is taken, the queued job that will run it.

        An error before that point (bad directory, busy project) is raised here, for the
        request to answer with; after it, the task's outcome is the backup's status."""
        place = self.slots.enqueue()
        if not place.done():
            job = _new_job("create", req.project_id, status="queued")
            self._remember(job)
            self._in_turn(f"create {req.project_id}", job, self._run_create(req, job, place), place)
            return job
        loop = asyncio.get_running_loop()
        thread = threading.get_ident()
        created: asyncio.Future[BackupMetadata] = loop.create_future()

        def on_created(meta: BackupMetadata) -> None:
            def deliver() -> None:
                if not created.done():
                    created.set_result(meta.model_copy(deep=True))

            self._in_loop(loop, thread, deliver)

        run = self._run_create(req, None, place, on_created)
        task = self._in_turn(f"create {req.project_id}", None, run, place)
        await asyncio.wait(
            {created, task}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if created.done():
            return created.result()
        if task.done():
            exc = task.exception()
            if exc is not None:
                raise exc
            return task.result()
        created.cancel()
        raise ApiError(
            503,
            f"the backup did not start within {START_TIMEOUT:.0f} s; it may still run: "
            f"see GET /api/v1/backup/list/{req.project_id}",
            type="not_started",
        )

    async def _run_create(
        self,
        req: CreateRequest,
        job: Job | None,
        place: asyncio.Future[None],
        on_created: Callable[[BackupMetadata], None] | None = None,
    ) -> BackupMetadata:
        """The create in its turn; `job` (a queued create) follows it to its end."""
        try:
            meta = await self._turn(job, place, lambda: self._create(req, job, on_created))
        except BaseException as exc:
            if job is not None:
                _fail(job, exc)
            raise
        else:
            if job is not None:
                job.status = "succeeded"
                job.backup = meta
            return meta
        finally:
            if job is not None:
                job.finished_at = _now()
                self.hub.publish(job.project_id, "job", job.model_dump(mode="json"))

    async def _create(
        self,
        req: CreateRequest,
        job: Job | None,
        on_created: Callable[[BackupMetadata], None] | None,
    ) -> BackupMetadata:
        backup_id: str | None = None

        def remember(meta: BackupMetadata) -> None:
            nonlocal backup_id
            backup_id = meta.id
            if job is not None:
                job.backup_id = meta.id
                job.backup = meta
            self.hub.publish(meta.project_id, "backup", meta.model_dump(mode="json"))
            if on_created is not None:
                on_created(meta)

        try:
            meta = await self.mgr.create(req, progress=self._progress(job), on_created=remember)
        except BaseException:
            if backup_id is not None:  # tell event streams (and the job) how it ended
                with contextlib.suppress(Exception):
                    info = await asyncio.shield(self.mgr.info(req.project_id, backup_id))
                    if job is not None:
                        job.backup = info.metadata
                    self.hub.publish(
                        req.project_id, "backup", info.metadata.model_dump(mode="json")
                    )
            raise
        self.hub.publish(req.project_id, "backup", meta.model_dump(mode="json"))
        return meta

    # -- restore

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def _remember(self, job: Job) -> None:
        self._jobs[job.job_id] = job
        while len(self._jobs) > MAX_JOBS:
            oldest = next(
                (j for j in self._jobs.values() if j.status not in ("queued", "running")), None
            )
            if oldest is None:
                break
            del self._jobs[oldest.job_id]

    async def start_restore(self, req: RestoreRequest) -> Job:
        """Start a restore as a job (queued when every slot is taken); errors the core finds
        at once are raised here instead."""
        job = _new_job(
            "restore", req.project_id, backup_id=req.backup_id, restore_dir=req.restore_dir
        )

        def done(result: RestoreResult) -> None:
            job.result = RestoreOutcome.of(result)
            job.backup_id = result.backup_id  # "latest" becomes the id actually restored
            if result.files_damaged:  # not a success a client may take for one; its result kept
                named = ", ".join(name(d.path) for d in result.damaged_files[:5])
                _fail(
                    job,
                    Damaged(
                        f"{result.files_damaged} file(s) not restored (damaged in the "
                        f"repository: {named}); every other file was restored (see "
                        "result.damaged_files)"
                    ),
                )

        return await self._start_job(
            job, lambda progress: self.mgr.restore(req, progress=progress), done
        )

    async def start_copy(self, project_id: str, to: str, backup_ids: list[str] | None) -> Job:
        """Start a copy of backups into the repository `to` as a job, as a restore starts."""
        job = _new_job("copy", project_id, target=to)

        def done(result: CopyResult) -> None:
            job.copied = result
            job.target = result.target

        return await self._start_job(
            job,
            lambda progress: self.mgr.copy(project_id, to, backup_ids, progress=progress),
            done,
        )

    async def _start_job(
        self,
        job: Job,
        work: Callable[[Callable[[ProgressEvent], None]], Awaitable[T]],
        done: Callable[[T], None],
    ) -> Job:
        """Run `work(progress)` as `job`, queued when every slot is taken. Errors that come
        within EARLY_ERROR_WINDOW, before any progress (busy project, damaged backup, a bad
        target), are raised here for the request to answer; later ones end the job."""
        label = f"{job.kind} {job.project_id}"
        place = self.slots.enqueue()
        if not place.done():
            job.status = "queued"
            self._remember(job)
            self._in_turn(
                label, job, self._run_job(job, work, self._progress(job), done, place), place
            )
            return job
        job.started_at = _now()
        started = asyncio.Event()
        report = self._progress(job)

        def progress(event: ProgressEvent) -> None:
            started.set()
            report(event)

        task = self._in_turn(label, job, self._run_job(job, work, progress, done, place), place)
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait(
                {task, waiter}, timeout=EARLY_ERROR_WINDOW, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            raise exc  # never became a job the client knows of
        self._remember(job)
        return job

    async def _run_job(
        self,
        job: Job,
        work: Callable[[Callable[[ProgressEvent], None]], Awaitable[T]],
        progress: Callable[[ProgressEvent], None],
        done: Callable[[T], None],
        place: asyncio.Future[None],
    ) -> T:
        try:
            result = await self._turn(job, place, lambda: work(progress))
        except BaseException as exc:
            _fail(job, exc)
            raise
        else:
            job.status = "succeeded"
            done(result)
            return result
        finally:
            job.finished_at = _now()
            self.hub.publish(job.project_id, "job", job.model_dump(mode="json"))
