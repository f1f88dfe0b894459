"""The API's own response bodies; everything else it returns is a core model as it is.

Each endpoint declares these as its response models, so the OpenAPI document describes every
answer (schemathesis checks that it does)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import (
    BackupId,
    BackupInfo,
    BackupInfoView,
    BackupMetadata,
    CopyResult,
    ProgressEvent,
    ProjectId,
    RestoreResult,
    RestoreUndo,
)
from core.retention import Policy


class ErrorItem(BaseModel):
    """One problem with a request: where (`loc`, e.g. ["body", "data_dir"]), what, which kind."""

    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer (4xx and 5xx) has this one shape, FastAPI's validation shape."""

    detail: list[ErrorItem]


class Health(BaseModel):
    """Liveness only: no version, path or configuration is revealed without a token."""

    status: Literal["ok"] = "ok"


class BackupPage(BaseModel):
    """One page of a project's backups, newest first; `total` counts all that match."""

    project_id: str
    total: int
    limit: int
    offset: int
    items: list[BackupMetadata]


class BackupInfoResponse(BackupInfoView):
    """`info` as `info --json` gives it (core.models.BackupInfoView), and the live progress
    while the backup is being worked on."""

    progress: ProgressEvent | None = None

    @classmethod
    def of(cls, info: BackupInfo, progress: ProgressEvent | None) -> BackupInfoResponse:  # type: ignore[override]
        return super().of(info, progress=progress)


#: How to undo a restore, as the engine built it (kept under the name the API had).
Undo = RestoreUndo


class RestoreOutcome(RestoreResult):
    """A restore's result as the API gives it: the engine's undo as data, and its command line
    without the repository (the server's own business) as the undo hint."""

    @classmethod
    def of(cls, result: RestoreResult) -> RestoreOutcome:
        hint = result.undo.command() if result.undo is not None else None
        return cls.model_validate({**result.model_dump(), "undo_hint": hint})


class CopyBody(BaseModel):
    """Copy a project's backups into another repository: `to` is an absolute path under an
    allowed directory or an `s3://BUCKET/PREFIX` URL (reached with the server's own
    credentials); `backup_ids` None copies every completed backup."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=4096)
    backup_ids: list[BackupId] | None = Field(default=None, min_length=1, max_length=1000)


class JobError(BaseModel):
    """Why a background job failed: the HTTP status it would have had, and the one line."""

    status_code: int
    type: str
    msg: str


JobStatus = Literal["queued", "running", "succeeded", "failed"]


class Job(BaseModel):
    """A background create, restore or copy, polled at GET /api/v1/jobs/{job_id}.

    A job is "queued" while the server already runs as many long operations as it allows,
    "running" once it has its turn. A create is a job only when it had to queue (else its
    answer is the backup's PENDING metadata); its `backup_id` is known once it runs, and
    `backup` is the backup's metadata as the create ended. A copy names its `target` and,
    once it succeeded, what travelled (`copied`)."""

    job_id: str
    kind: Literal["create", "restore", "copy"] = "restore"
    status: JobStatus = "running"
    project_id: str
    backup_id: str | None = None
    restore_dir: str | None = None
    target: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: ProgressEvent | None = None
    result: RestoreOutcome | None = None
    copied: CopyResult | None = None
    backup: BackupMetadata | None = None
    error: JobError | None = None


class PolicyBody(BaseModel):
    """A project's retention policy (null: none; every backup is kept until deleted)."""

    project_id: str
    policy: Policy | None


class ForgetBody(BaseModel):
    """`forget`: the rules to apply (null: the project's stored policy), a dry run, and the
    share of a pack that may stay unused before reclaim repacks it."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    policy: Policy | None = None
    max_unused: float = Field(default=0.05, ge=0, le=1)


class RenameRequest(BaseModel):
    """`POST /projects/{project_id}/rename`: the project's new name."""

    model_config = ConfigDict(extra="forbid")
    new_id: ProjectId
