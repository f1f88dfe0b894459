"""A project's scheduled runs as the repository keeps them (issue 14): the run lock that lets
one `run-due` at a time back a project up, the last run beside the policy, and where the
project stands against its schedule (the due rule itself is core/schedule.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from core import schedule as sched
from core.manage.locking import locked
from core.models import RESTORABLE, BackupMetadata, LastRun
from core.repo import locks
from core.repo.repository import Repository
from core.retention import Policy

#: How long `run-due` waits for another one's run lock before it leaves the project to it:
#: long enough that two started together settle which one runs, short enough that a run in
#: progress (which holds it for the whole backup) is left alone at once.
RUN_LOCK_WAIT = 3.0


@contextlib.contextmanager
def run_lock(repo: Repository, timeout: float | None = None) -> Iterator[locks.RepoLock]:
    """The project's run lock, exclusive among run locks only (a backup's own shared lock
    beside it is not held up): raises Busy naming the run that holds it. Held while the due
    check is made again and the run done, so two callers never both run one slot."""
    with locks.acquire(
        repo.store,
        exclusive=True,
        operation="run-due",
        timeout=RUN_LOCK_WAIT if timeout is None else timeout,
        project_id=repo.project_id,
        prefix=locks.RUN_PREFIX,
    ) as lock:
        yield lock


def run_in_progress(repo: Repository) -> bool:
    """Whether a live run lock is held (by any process, on any host)."""
    try:
        return bool([i for i in locks.list_locks(repo.store, locks.RUN_PREFIX) if not i.stale])
    except OSError:
        return False


def backup_running(repo: Repository) -> str | None:
    """Who is backing the project up now (a live create lock, any process or host), or None:
    a scheduled run then waits for its next call rather than back up beside it."""
    try:
        live = [i for i in locks.live_locks(repo.store) if i.operation == "create"]
    except OSError:
        return None
    return live[0].describe() if live else None


def last_run(repo: Repository, *, live: bool = True) -> LastRun | None:
    """The last scheduled run; with `live`, one left "running" by a process that holds no
    run lock any more reads as failed ("interrupted"), as live_status does for a backup."""
    raw = repo.last_run()
    if raw is None:
        return None
    try:
        run = LastRun.model_validate(raw)
    except ValidationError:
        return None
    if live and run.status == "running" and not run_in_progress(repo):
        run = run.model_copy(
            update={"status": "failed", "error": "interrupted: the run stopped before it ended"}
        )
    return run


def record(repo: Repository, run: LastRun) -> None:
    """Write the last run under the project's shared lock (as every settings write: another
    writer's recovery never runs meanwhile)."""
    with locked(repo, "schedule", exclusive=False):
        repo.save_last_run(run.model_dump(mode="json"))


@dataclass(frozen=True)
class ScheduleState:
    """A project against its schedule at `now`: its policy, last run, the time the due rule
    counts from (the last run's start, else the newest backup's creation) and the state."""

    project_id: str
    policy: Policy | None
    last_run: LastRun | None
    since: datetime | None
    state: sched.DueState | None
    #: When due: the backup of it running now, if one is (see backup_running).
    running: str | None = None

    @property
    def schedule(self) -> str | None:
        return None if self.policy is None else self.policy.schedule

    @property
    def due(self) -> bool:
        return self.state is not None and self.state.due


def baseline(run: LastRun | None, metas: list[BackupMetadata]) -> datetime | None:
    """Since when the schedule is counted: the last run's start; a project never run by the
    schedule counts from its newest completed backup (set a schedule on a project backed up
    a minute ago and it is not backed up again at once); with neither, a run is owed now."""
    if run is not None:
        return run.started_at
    done = [m.created_at for m in metas if m.status in RESTORABLE]
    return max(done) if done else None


def state_of(
    project_id: str,
    policy: Policy | None,
    run: LastRun | None,
    metas: list[BackupMetadata],
    now: datetime,
    running: Callable[[], str | None] | None = None,
) -> ScheduleState:
    since = baseline(run, metas)
    if policy is None or policy.schedule is None:
        return ScheduleState(project_id, policy, run, since, None)
    try:
        schedule = sched.parse(policy.schedule)
    except sched.ScheduleError:  # validated when stored; a newer version's syntax
        return ScheduleState(project_id, policy, run, since, None)
    state = sched.due_state(schedule, project_id, since, now, policy.schedule_delay)
    busy = running() if running is not None and state.due else None  # only asked when due
    return ScheduleState(project_id, policy, run, since, state, busy)
