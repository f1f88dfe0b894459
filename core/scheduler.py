"""`run-due`: back up every project whose scheduled run is owed (issue 14). The one place the
due check runs: the CLI's `run-due` (called by a systemd timer or cron every few minutes) and
`serve --run-schedules` both call `run_due`.

For each project, in turn: its state against its schedule (core/schedule.py: a slot at or
before now later than its last run's start) → not due: nothing is written, nothing locked
→ due: its run lock (core/manage/runs.py; another run-due holding it: left to that one) →
the due check again under the lock (the other may just have finished) → the last run
recorded "running" → a backup of its remembered directory (which applies its retention and
copies to its `copy_to`, as every backup does) → retention again if that one could not run →
a verify of the new backup when the policy asks → the last run recorded with its outcome →
the lock released → its notifications (core/notify.py). Every step is in the project's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from core import notify
from core.display import plural
from core.errors import Busy, NexusError
from core.models import BackupMetadata, BackupType, CopyResult, CreateRequest, LastRun
from core.retention import ForgetResult, Policy
from core.service import Engine

Status = Literal["not-scheduled", "not-due", "busy", "succeeded", "failed"]
OPERATION = "run-due"
HOSTNAME = socket.gethostname()
#: The longest error kept in last_run.json (LastRun.error's bound).
MAX_ERROR = 4096


@dataclass
class Step:
    """One step of a run: backup, retention, copy, verify."""

    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass
class RunOutcome:
    """What `run-due` did for one project: the structured result a face prints and a metrics
    writer reads (status, times, the backup and its figures, each step, notifier errors)."""

    project_id: str
    status: Status
    message: str
    scheduled_for: datetime | None = None
    next_run: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    backup: BackupMetadata | None = None
    steps: list[Step] = field(default_factory=list)
    notify_errors: list[str] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.status in ("succeeded", "failed")

    @property
    def ok(self) -> bool:
        """Not a failure: a project not due, busy elsewhere or not scheduled is fine."""
        return self.status != "failed"

    @property
    def backup_id(self) -> str | None:
        return None if self.backup is None else self.backup.id

    @property
    def warnings(self) -> int:
        return 0 if self.backup is None else len(self.backup.stats.warnings)

    @property
    def error(self) -> str | None:
        failed = [s for s in self.steps if not s.ok]
        if failed:
            return f"{failed[0].name}: {failed[0].detail}"
        return self.message if self.status == "failed" else None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


async def run_due(
    engine: Engine,
    project_ids: list[str] | None = None,
    *,
    now: datetime | None = None,
) -> list[RunOutcome]:
    """Run every owed scheduled backup (of `project_ids`, default every project), one
    project after the other; never raises for one project's failure (its outcome says it).
    `now`: the time the schedule is judged at (default: the real time); given, the backup
    is also recorded as made then (tests and `--now` drive the clock without sleeping)."""
    names = project_ids if project_ids is not None else await engine.project_ids()
    outcomes = []
    for project_id in names:
        outcomes.append(await run_project(engine, project_id, now=now))
    return outcomes


async def run_project(
    engine: Engine, project_id: str, *, now: datetime | None = None
) -> RunOutcome:
    """One project's scheduled run, if owed (see the module docstring)."""
    at = now or datetime.now(UTC)
    try:
        st = await asyncio.to_thread(engine.schedule_state_blocking, project_id, at)
    except (NexusError, OSError) as exc:
        return RunOutcome(project_id, "failed", f"cannot read its schedule: {exc}")
    if st.schedule is None or st.state is None:
        return RunOutcome(project_id, "not-scheduled", "no schedule in its policy")
    if not st.state.due:
        return RunOutcome(project_id, "not-due", "not due", next_run=st.state.next_run)
    if st.running is not None:  # a backup of it by hand (or by an older version): not beside it
        return RunOutcome(project_id, "busy", f"a backup of it is running ({st.running})")
    try:
        lock = engine.run_lock(project_id)
        await asyncio.to_thread(lock.__enter__)
    except Busy as exc:
        return RunOutcome(project_id, "busy", f"another run-due is running it ({exc})")
    except (NexusError, OSError) as exc:
        return RunOutcome(project_id, "failed", f"cannot take its run lock: {exc}")
    try:
        outcome = await _run_locked(engine, project_id, at, now is not None)
    finally:
        await asyncio.to_thread(lock.__exit__, None, None, None)
    if outcome.ran and st.policy is not None:
        await asyncio.to_thread(_notify, engine, st.policy, outcome)
    return outcome


async def _run_locked(engine: Engine, project_id: str, at: datetime, simulated: bool) -> RunOutcome:
    st = await asyncio.to_thread(engine.schedule_state_blocking, project_id, at)
    if st.state is None or not st.state.due or st.policy is None:
        # another run-due ran it while this one waited for the lock
        return RunOutcome(project_id, "not-due", "not due (just run by another run-due)")
    slot = st.state.due_slot
    outcome = RunOutcome(project_id, "failed", "", scheduled_for=slot, started_at=at)
    log = engine.logger
    running = LastRun(started_at=at, status="running", scheduled_for=slot, host=HOSTNAME)
    try:
        await asyncio.to_thread(engine.record_run_blocking, project_id, running)
    except (NexusError, OSError) as exc:
        outcome.message = f"cannot record the run: {exc}"
        log.error(project_id, OPERATION, outcome.message)
        return outcome
    log.info(project_id, OPERATION, f"scheduled run for {slot:%Y-%m-%d %H:%M:%S} UTC started")
    t0 = time.monotonic()
    await _steps(engine, st.policy, outcome, at if simulated else None)
    outcome.finished_at = at + timedelta(seconds=time.monotonic() - t0)
    outcome.status = "succeeded" if all(s.ok for s in outcome.steps) else "failed"
    outcome.message = outcome.error or "succeeded"
    done = running.model_copy(
        update={
            "finished_at": outcome.finished_at,
            "status": outcome.status,
            "backup_id": outcome.backup_id,
            # bounded as LastRun reads it: an unreadable last run would read as never run
            "error": None if outcome.error is None else outcome.error[:MAX_ERROR],
            "warnings": outcome.warnings,
        }
    )
    try:
        await asyncio.to_thread(engine.record_run_blocking, project_id, done)
    except (NexusError, OSError) as exc:
        outcome.notify_errors.append(f"the run's outcome could not be recorded: {exc}")
        log.warning(project_id, OPERATION, outcome.notify_errors[-1])
    if outcome.status == "succeeded":
        log.info(project_id, OPERATION, "scheduled run succeeded", outcome.backup_id)
    else:
        log.error(
            project_id, OPERATION, f"scheduled run failed: {outcome.error}", outcome.backup_id
        )
    return outcome


async def _steps(
    engine: Engine, policy: Policy, outcome: RunOutcome, created_at: datetime | None
) -> None:
    """Backup, retention, copy, verify; a failed step ends the run (nothing to copy or
    verify without a backup) except retention and copy, which leave the backup as it is."""
    project_id = outcome.project_id
    t = time.monotonic()
    try:
        settings = await engine.settings(project_id)
        data_dir = settings.get("data_dir")
        if not isinstance(data_dir, str) or not data_dir:
            raise NexusError("the project has no directory yet: back it up once with create")
        slot = outcome.scheduled_for
        req = CreateRequest(
            project_id=project_id,
            backup_type=BackupType.INCREMENTAL,
            data_dir=data_dir,
            tags={"scheduled": f"{slot:%Y-%m-%dT%H:%M:%SZ}"} if slot else {},
            created_at=created_at,
        )
        # never made again: a project deleted since the run listed it stays deleted
        meta = await engine.create(req, make_project=False)
    except (NexusError, OSError) as exc:
        outcome.steps.append(Step("backup", False, str(exc), time.monotonic() - t))
        return
    outcome.backup = meta
    files = plural(meta.files_count, "file")
    warned = f", {len(meta.stats.warnings)} skipped or changed" if meta.stats.warnings else ""
    outcome.steps.append(Step("backup", True, f"{meta.id}: {files}{warned}", time.monotonic() - t))
    await _retention(engine, policy, outcome)
    copied = engine.copy_outcome(project_id, meta.id)
    if isinstance(copied, CopyResult):
        outcome.steps.append(Step("copy", True, f"copied to {copied.target}"))
    elif isinstance(copied, str):
        outcome.steps.append(Step("copy", False, copied))
    if policy.schedule_verify != "off":
        t = time.monotonic()
        quick = policy.schedule_verify == "quick"
        try:
            result = await engine.verify(project_id, meta.id, quick=quick)
        except (NexusError, OSError) as exc:
            outcome.steps.append(Step("verify", False, str(exc), time.monotonic() - t))
        else:
            detail = f"{result.chunks_checked} chunks checked" + (
                "" if result.ok else f"; damaged: {'; '.join(result.errors[:3]) or 'yes'}"
            )
            outcome.steps.append(Step("verify", result.ok, detail, time.monotonic() - t))


async def _retention(engine: Engine, policy: Policy, outcome: RunOutcome) -> None:
    """The backup applied the policy already (every backup does) without waiting for a busy
    project; when it could not, the run applies it once more, waiting as forget does."""
    if not policy.retains() or outcome.backup is None:
        return
    kept = engine.retention_outcome(outcome.project_id, outcome.backup.id)
    if isinstance(kept, ForgetResult):
        outcome.steps.append(Step("retention", True, kept.summary().removeprefix("retention ")))
        return
    t = time.monotonic()
    try:
        again = await engine.forget(outcome.project_id)
    except (NexusError, OSError) as exc:
        outcome.steps.append(Step("retention", False, str(exc), time.monotonic() - t))
        return
    summary = again.summary().removeprefix("retention ")
    outcome.steps.append(Step("retention", True, summary, time.monotonic() - t))


def payload(outcome: RunOutcome) -> dict:
    """The webhook's JSON body (and what NEXUS_* says to a command)."""

    def iso(t: datetime | None) -> str | None:
        return None if t is None else t.isoformat().replace("+00:00", "Z")

    return {
        "project": outcome.project_id,
        "status": outcome.status,
        "backup_id": outcome.backup_id,
        "error": outcome.error,
        "scheduled_for": iso(outcome.scheduled_for),
        "started_at": iso(outcome.started_at),
        "finished_at": iso(outcome.finished_at),
        "warnings": outcome.warnings,
        "host": HOSTNAME,
        "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in outcome.steps],
    }


def _notify(engine: Engine, policy: Policy, outcome: RunOutcome) -> None:
    """The policy's command for this outcome and its webhook; each failure is logged and
    kept in `outcome.notify_errors`, never changes `outcome.status`."""
    body = payload(outcome)
    values = {
        "NEXUS_PROJECT": outcome.project_id,
        "NEXUS_BACKUP_ID": outcome.backup_id,
        "NEXUS_STATUS": outcome.status,
        "NEXUS_ERROR": outcome.error,
        "NEXUS_SCHEDULED_FOR": body["scheduled_for"],
    }
    command = policy.on_success if outcome.status == "succeeded" else policy.on_failure
    errors = []
    if command:
        errors.append(notify.run_command(command, values))
    if policy.webhook:
        errors.append(notify.post_webhook(policy.webhook, body))
    for error in errors:
        if error is None:
            continue
        outcome.notify_errors.append(error)
        with contextlib.suppress(Exception):
            engine.logger.warning(outcome.project_id, "notify", error, outcome.backup_id)
    if command or policy.webhook:
        sent = len([e for e in errors if e is None])
        with contextlib.suppress(Exception):
            engine.logger.info(
                outcome.project_id, "notify", f"{sent} of {len(errors)} notifications sent"
            )


#: How often `serve --run-schedules` runs the due check (seconds).
SERVE_INTERVAL = 60.0


async def run_periodically(
    engine: Engine,
    every: float = SERVE_INTERVAL,
    on_outcomes: Callable[[list[RunOutcome]], None] | None = None,
) -> None:
    """`serve --run-schedules`: `run_due` at once and then every `every` seconds, until
    cancelled (a backup in progress is then cancelled, marked FAILED "cancelled", and its
    run lock released). The run lock keeps it from racing a timer's run-due on the same
    repository. A round that raises (a root gone for a moment) never stops the loop;
    `on_outcomes` gets each round's outcomes (the server logs the runs)."""
    while True:
        try:
            outcomes = await run_due(engine)
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad round (a root gone for a moment) never ends the loop
            outcomes = []
        if on_outcomes is not None:
            with contextlib.suppress(Exception):
                on_outcomes(outcomes)
        await asyncio.sleep(every)
