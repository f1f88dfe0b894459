"""The endpoints: the spec's five, plus copy, projects, jobs, health and the event stream.

Handlers stay thin: validate (pydantic), check paths against the allowed directories, call the
core, shape the answer. Core errors become their HTTP status through the handlers in
api.errors; where the handler knows which field an error is about, it says so in `loc`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path as FsPath
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from api.errors import ApiError
from api.events import EventHub, TooManySubscribers
from api.jobs import JobRunner
from api.paths import PathPolicy
from api.pools import ReadPool
from api.schemas import (
    BackupInfoResponse,
    BackupPage,
    CopyBody,
    ErrorBody,
    ForgetBody,
    Health,
    Job,
    PolicyBody,
    RenameRequest,
    RestoreOutcome,
)
from core.errors import NotFound
from core.ids import ID_PATTERN
from core.models import (
    IN_PROGRESS,
    BackupMetadata,
    BackupStatus,
    BackupType,
    CreateRequest,
    DeleteResult,
    ListFilter,
    ProjectDeleteResult,
    ProjectSummary,
    RestoreRequest,
    check_id,
)
from core.query import WHEN_HELP, parse_tag, parse_when
from core.retention import ForgetResult, Policy
from core.service import Engine
from core.stats import ProjectStats

ReqT = TypeVar("ReqT", CreateRequest, RestoreRequest)
T = TypeVar("T")


@dataclass
class ApiContext:
    """What the handlers share, built once per app by `create_app`."""

    mgr: Engine
    policy: PathPolicy
    jobs: JobRunner
    hub: EventHub
    reads: ReadPool


def get_ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: Answers any authenticated endpoint may give besides its own.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _err("The core could not carry out the request (its one-line reason)"),
    401: _err("Missing or invalid bearer token"),
    403: _err(
        "A cross-site request (Origin, Sec-Fetch-Site), or a path outside the allowed directories"
    ),
    413: _err("Request body too large"),
    415: _err("A request body that is not declared 'Content-Type: application/json'"),
    422: _err("Invalid input; `loc` names the field"),
    423: _err(
        "The project is encrypted and no password the server was given opens it "
        "(type 'wrong_password')"
    ),
    500: _err("Internal error (a bug; logged on the server, no details given)"),
}
NOT_FOUND = {404: _err("Unknown project or backup")}
CONFLICT = {
    409: _err(
        "Project busy, backup not in a state that allows this, or repository data damaged "
        "(type 'damaged')"
    )
}
DAMAGED = {409: _err("Repository data damaged (type 'damaged'), e.g. a project's config.json")}
FORBIDDEN = {403: _err("Path outside the directories the server allows")}
STORAGE_FULL = {507: _err("No space left on the repository or the target")}


#: A job id: what `JobRunner` makes (secrets.token_hex(8)).
JOB_ID = re.compile(r"[0-9a-f]{16}")


def _whole(pattern: re.Pattern[str]) -> str:
    """The pattern for the OpenAPI document, anchored: JSON Schema patterns match anywhere."""
    return f"^(?:{pattern.pattern})$"


def _id_param(what: str) -> Any:
    # validated by `_checked` (fullmatch), never by FastAPI's pattern=, whose `$` would let
    # a trailing newline through on some versions
    return Path(
        description=f"{what}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
        "digit, without '..'",
        json_schema_extra={"pattern": _whole(ID_PATTERN)},
    )


def _checked(value: str, what: str) -> str:
    try:
        return check_id(value, what)
    except ValueError as exc:
        raise ApiError(422, str(exc), type="value_error", loc=["path", what]) from None


def _checked_job_id(value: str) -> str:
    if not JOB_ID.fullmatch(value):
        raise ApiError(
            422,
            f"invalid job_id {value[:40]!r}: 16 lowercase hexadecimal digits",
            type="value_error",
            loc=["path", "job_id"],
        )
    return value


ProjectIdPath = Annotated[str, _id_param("project_id")]
BackupIdPath = Annotated[str, _id_param("backup_id ('latest' for the newest completed one)")]
JobIdPath = Annotated[
    str, Path(description="16 hexadecimal digits", json_schema_extra={"pattern": _whole(JOB_ID)})
]


public = APIRouter(prefix="/api/v1")
router = APIRouter(prefix="/api/v1", responses=COMMON_ERRORS)


@public.get("/health", response_model=Health, tags=["meta"], summary="Liveness (no token needed)")
async def health() -> Health:
    return Health()


@router.get("/projects", response_model=list[ProjectSummary], responses=DAMAGED, tags=["projects"])
async def projects(ctx: Ctx) -> list[ProjectSummary]:
    """Every project of the repository, with its backup count and last status."""
    return await ctx.reads.run(ctx.mgr.projects_blocking)


def _project_exists(ctx: ApiContext, project_id: str) -> bool:
    return bool(ctx.mgr.project_exists_blocking(project_id))


def _not_found(ctx: ApiContext, exc: NotFound, project_id: str, where: str) -> ApiError:
    """Name the field a NotFound is about: the project if it does not exist, else the backup."""
    field = "backup_id" if _project_exists(ctx, project_id) else "project_id"
    return ApiError.from_core(exc, loc=[where, field])


def _non_directory_on_the_way(target: FsPath) -> FsPath | None:
    """The target itself, or the nearest existing ancestor, if that is not a directory."""
    for path in (target, *target.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def _confined(ctx: ApiContext, req: ReqT, **update: Any) -> ReqT:
    """The request as the manager gets it: with the resolved values in `update`, and confined
    to the allowed directories, so that the engine opens its directory beneath one of them
    without following symlinks (a directory swapped for a symlink after the check above
    cannot redirect it)."""
    return req.model_copy(update={**update, "confine_to": list(ctx.policy.roots)})


def _allowed(ctx: ApiContext, raw: str, field: str, project_id: str, operation: str) -> FsPath:
    """The resolved path, or a 403 that is also written to the project's log."""
    try:
        return ctx.policy.resolve(raw, field)
    except ApiError as exc:
        if exc.status_code == 403:
            ctx.mgr.logger.warning(project_id, operation, f"API refused {field} {raw!r}: {exc.msg}")
        raise


@router.post(
    "/backup/create",
    status_code=202,
    response_model=None,
    responses={
        202: {
            "model": BackupMetadata | Job,
            "description": "The backup started: its PENDING metadata; or, when the server "
            "already runs as many long operations as it allows, a queued Job to poll",
        },
        **FORBIDDEN,
        **NOT_FOUND,
        **CONFLICT,
        **STORAGE_FULL,
        503: _err("The backup did not start in time (it may still run)"),
    },
    tags=["backups"],
    summary="Start a backup (202 with its PENDING metadata at once, or a queued job)",
)
async def create_backup(req: CreateRequest, ctx: Ctx) -> JSONResponse:
    """The backup goes on in the server; follow it with `info` or the event stream.
    `data_dir` must be an existing directory under one of the allowed directories."""
    data_dir = _allowed(ctx, req.data_dir, "data_dir", req.project_id, "create")
    if not data_dir.exists():
        raise ApiError(
            422,
            f"data_dir {req.data_dir!r} does not exist",
            type="invalid_path",
            loc=["body", "data_dir"],
        )
    if not data_dir.is_dir():
        raise ApiError(
            422,
            f"data_dir {req.data_dir!r} is not a directory",
            type="invalid_path",
            loc=["body", "data_dir"],
        )
    try:
        started = await ctx.jobs.start_create(_confined(ctx, req, data_dir=str(data_dir)))
    except NotFound as exc:
        loc = ["body", "parent_backup_id"] if req.parent_backup_id else []
        raise ApiError.from_core(exc, loc=loc) from None
    if isinstance(started, Job):
        where = f"/api/v1/jobs/{started.job_id}"
    else:
        where = f"/api/v1/backup/info/{started.project_id}/{started.id}"
    return JSONResponse(
        started.model_dump(mode="json"), status_code=202, headers={"Location": where}
    )


@router.post(
    "/backup/restore",
    response_model=None,
    responses={
        200: {"model": RestoreOutcome, "description": "Dry run: what a restore would do"},
        202: {"model": Job, "description": "Restore started; poll GET /api/v1/jobs/{job_id}"},
        **FORBIDDEN,
        **NOT_FOUND,
        **CONFLICT,
        **STORAGE_FULL,
    },
    tags=["backups"],
    summary="Restore a backup into a directory (202 with a job; 200 for a dry run)",
)
async def restore_backup(req: RestoreRequest, ctx: Ctx) -> JSONResponse:
    """`restore_dir` must be under an allowed directory and not be a file; it is created if
    missing. Only a completed backup can be restored (else 409)."""
    target = _allowed(ctx, req.restore_dir, "restore_dir", req.project_id, "restore")
    blocker = _non_directory_on_the_way(target)
    if blocker is not None:
        what = (
            "exists and is not a directory" if blocker == target else f"is under {blocker}, a file"
        )
        raise ApiError(
            422,
            f"restore_dir {req.restore_dir!r} {what}",
            type="invalid_path",
            loc=["body", "restore_dir"],
        )
    try:
        info = await ctx.reads.run(ctx.mgr.info_blocking, req.project_id, req.backup_id)
    except NotFound as exc:
        raise _not_found(ctx, exc, req.project_id, "body") from None
    meta = info.metadata
    if not meta.restorable:
        raise ApiError(
            409,
            f"backup {meta.id} is {meta.status.value}: only a completed backup can be restored",
            type="conflict",
            loc=["body", "backup_id"],
        )
    # pin the backup ("latest" may move on) and the resolved target
    req = _confined(ctx, req, restore_dir=str(target), backup_id=meta.id)
    try:
        if req.dry_run:
            result = RestoreOutcome.of(await ctx.mgr.restore(req))
            return JSONResponse(result.model_dump(mode="json"), status_code=200)
        job = await ctx.jobs.start_restore(req)
    except NotFound as exc:
        raise _not_found(ctx, exc, req.project_id, "body") from None
    return JSONResponse(
        job.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/api/v1/jobs/{job.job_id}"},
    )


#: The one kind of target a client may name for a copy: a bucket. A local directory is not
#: offered over the API: the copy writes its objects by path, and a symlink swapped into the
#: path while it writes could send them outside every allowed directory (invariant 7 holds
#: for what the API reads and restores through directory descriptors, not for this).
S3_PREFIX = "s3://"


def _copy_target(ctx: ApiContext, raw: str, project_id: str) -> str:
    """`to` as the engine gets it: an s3:// URL as given; a local path is refused (403)."""
    loc = ["body", "to"]
    if raw.startswith(S3_PREFIX):
        return raw
    if not raw.startswith("/"):
        raise ApiError(
            422,
            f"to must be an s3://BUCKET/PREFIX URL, got {raw[:80]!r}",
            type="invalid_path",
            loc=loc,
        )
    if ctx.mgr.project_exists_blocking(project_id):
        ctx.mgr.logger.warning(project_id, "copy", f"API refused to {raw[:200]!r}: a local path")
    raise ApiError(
        403,
        "the API copies only to object storage (s3://BUCKET/PREFIX); copy to a local "
        "directory with the CLI or the TUI",
        type="forbidden_path",
        loc=loc,
    )


@router.post(
    "/backup/copy/{project_id}",
    status_code=202,
    response_model=Job,
    responses={
        202: {"model": Job, "description": "Copy started; poll GET /api/v1/jobs/{job_id}"},
        **FORBIDDEN,
        **NOT_FOUND,
        **CONFLICT,
        **STORAGE_FULL,
    },
    tags=["backups"],
    summary="Copy backups into another repository (202 with a job)",
)
async def copy_backups(ctx: Ctx, project_id: ProjectIdPath, body: CopyBody) -> JSONResponse:
    """Only the chunks the target lacks travel; ids and metadata are kept; each copy is
    verified in the target before it counts; a copy cut short is finished by asking again.
    `backup_ids` null copies every completed backup of the project."""
    _checked(project_id, "project_id")
    if not await ctx.reads.run(ctx.mgr.project_exists_blocking, project_id):
        raise ApiError(
            404, f"unknown project {project_id!r}", type="not_found", loc=["path", "project_id"]
        )
    to = _copy_target(ctx, body.to, project_id)
    try:
        job = await ctx.jobs.start_copy(project_id, to, body.backup_ids)
    except NotFound as exc:
        raise ApiError.from_core(exc, loc=["body", "backup_ids"]) from None
    return JSONResponse(
        job.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/api/v1/jobs/{job.job_id}"},
    )


WHEN_DOC = "the query grammar of the README's list section: " + WHEN_HELP


def _query_value(parse: Callable[[str], T], raw: str | None, field: str) -> T | None:
    """A list filter parsed by the one query grammar (`core.query`); bad input is a 422 naming
    the query parameter, an empty value no filter."""
    if not raw:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise ApiError(422, str(exc), type="value_error", loc=["query", field]) from None


@router.get(
    "/backup/list/{project_id}",
    response_model=BackupPage,
    responses={**NOT_FOUND, **DAMAGED},
    tags=["backups"],
    summary="A project's backups, newest first, filtered and paged",
)
async def list_backups(
    ctx: Ctx,
    project_id: ProjectIdPath,
    backup_type: Annotated[BackupType | None, Query(alias="type")] = None,
    status: BackupStatus | None = None,
    tag: Annotated[str | None, Query(max_length=330, description="key=value, or key")] = None,
    since: Annotated[str | None, Query(max_length=64, description=WHEN_DOC)] = None,
    until: Annotated[str | None, Query(max_length=64, description=WHEN_DOC)] = None,
    q: Annotated[
        str | None, Query(max_length=256, description="words in id, type, status, tags, error")
    ] = None,
    host: Annotated[
        str | None, Query(max_length=255, description="only backups made on this host")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> BackupPage:
    _checked(project_id, "project_id")
    _query_value(parse_tag, tag, "tag")
    filters = ListFilter(
        type=backup_type,
        status=status,
        tag=tag or None,
        since=_query_value(parse_when, since, "since"),
        until=_query_value(partial(parse_when, end=True), until, "until"),
        text=q or None,
        host=host or None,
    )
    try:
        items = await ctx.reads.run(ctx.mgr.list_blocking, project_id, filters)
    except NotFound as exc:
        raise ApiError.from_core(exc, loc=["path", "project_id"]) from None
    return BackupPage(
        project_id=project_id,
        total=len(items),
        limit=limit,
        offset=offset,
        items=items[offset : offset + limit],
    )


@router.get(
    "/backup/info/{project_id}/{backup_id}",
    response_model=BackupInfoResponse,
    responses={**NOT_FOUND, **DAMAGED},
    tags=["backups"],
    summary="A backup's metadata, manifest summary, and progress while it runs",
)
async def backup_info(ctx: Ctx, project_id: ProjectIdPath, backup_id: BackupIdPath) -> Any:
    _checked(project_id, "project_id")
    _checked(backup_id, "backup_id")
    try:
        info = await ctx.reads.run(ctx.mgr.info_blocking, project_id, backup_id)
    except NotFound as exc:
        raise _not_found(ctx, exc, project_id, "path") from None
    meta = info.metadata
    # only while the backup is being worked on: a finished one may linger a moment in the core
    busy = meta.status in IN_PROGRESS or meta.status == BackupStatus.RESTORING
    progress = ctx.mgr.progress_of(project_id, meta.id) if busy else None
    return BackupInfoResponse.of(info, progress)


@router.delete(
    "/backup/{project_id}/{backup_id}",
    response_model=DeleteResult,
    responses={**NOT_FOUND, **CONFLICT, **STORAGE_FULL},
    tags=["backups"],
    summary="Delete a backup and reclaim the space only it used",
)
async def delete_backup(ctx: Ctx, project_id: ProjectIdPath, backup_id: BackupIdPath) -> Any:
    _checked(project_id, "project_id")
    _checked(backup_id, "backup_id")
    if backup_id == "latest":
        raise ApiError(
            422,
            "name the backup to delete by its id, not 'latest'",
            type="value_error",
            loc=["path", "backup_id"],
        )
    try:
        return await ctx.jobs.run_long(
            lambda: ctx.mgr.delete(project_id, backup_id, progress=ctx.jobs.publish_progress)
        )
    except NotFound as exc:
        raise _not_found(ctx, exc, project_id, "path") from None


@router.delete(
    "/projects/{project_id}",
    response_model=ProjectDeleteResult,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["projects"],
    summary="Delete a project and all its backups",
)
async def delete_project(
    ctx: Ctx,
    project_id: ProjectIdPath,
    backups: Annotated[
        int,
        Query(
            ge=0,
            le=10_000_000,
            description="the project's backup count as the client showed it: a different "
            "count now (a backup made meanwhile) is a 409, and nothing is deleted",
        ),
    ],
) -> Any:
    _checked(project_id, "project_id")
    try:
        return await ctx.jobs.run_long(lambda: ctx.mgr.delete_project(project_id, backups=backups))
    except NotFound as exc:
        raise ApiError.from_core(exc, loc=["path", "project_id"]) from None


@router.post(
    "/projects/{project_id}/rename",
    response_model=ProjectSummary,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["projects"],
    summary="Give a project a new name, every backup with it (a repository on a local disk)",
)
async def rename_project(ctx: Ctx, project_id: ProjectIdPath, body: RenameRequest) -> Any:
    _checked(project_id, "project_id")
    try:
        return await ctx.jobs.run_long(lambda: ctx.mgr.rename_project(project_id, body.new_id))
    except NotFound as exc:
        raise ApiError.from_core(exc, loc=["path", "project_id"]) from None


# --- retention (issue 13) ------------------------------------------------------------------


async def _project(ctx: ApiContext, project_id: str, fn: Callable[[], Any]) -> Any:
    """`fn` on a known project (a 404 naming the path otherwise)."""
    _checked(project_id, "project_id")
    try:
        return await fn()
    except NotFound as exc:
        raise _not_found(ctx, exc, project_id, "path") from None


@router.get(
    "/projects/{project_id}/policy",
    response_model=PolicyBody,
    responses={**NOT_FOUND, **DAMAGED},
    tags=["retention"],
    summary="A project's retention policy (null: none)",
)
async def get_policy(ctx: Ctx, project_id: ProjectIdPath) -> PolicyBody:
    async def work() -> PolicyBody:
        policy = await ctx.reads.run(ctx.mgr.policy_blocking, project_id)
        return PolicyBody(project_id=project_id, policy=policy)

    return await _project(ctx, project_id, work)


@router.put(
    "/projects/{project_id}/policy",
    response_model=PolicyBody,
    responses={
        **NOT_FOUND,
        **CONFLICT,
        403: _err("A notification command or webhook: set with the command line only"),
    },
    tags=["retention"],
    summary="Store a project's retention policy whole (applied after each backup)",
)
async def put_policy(ctx: Ctx, project_id: ProjectIdPath, body: Policy) -> PolicyBody:
    """The schedule may be set here; the notification commands and webhook may not (403):
    a command in the policy runs on the host of every `run-due`, so setting one is a shell
    there, which a token does not grant. Left out, the stored ones are kept."""

    async def work() -> PolicyBody:
        current = await ctx.reads.run(ctx.mgr.policy_blocking, project_id)
        policy = _keep_hooks(body, current)
        stored = await ctx.mgr.set_policy(project_id, policy)
        return PolicyBody(project_id=project_id, policy=stored)

    return await _project(ctx, project_id, work)


#: Policy fields the API never sets (see put_policy).
HOOKS = ("on_failure", "on_success", "webhook")


def _keep_hooks(body: Policy, current: Policy | None) -> Policy:
    for name in HOOKS:
        given, kept = getattr(body, name), getattr(current, name, None)
        if given is not None and given != kept:
            raise ApiError(
                403,
                f"{name} is set with the command line (policy set --{name.replace('_', '-')}), "
                "not through the API: it runs on the host of every run-due",
                type="forbidden",
                loc=["body", name],
            )
    return body.model_copy(update={n: getattr(current, n, None) for n in HOOKS})


@router.delete(
    "/projects/{project_id}/policy",
    response_model=PolicyBody,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["retention"],
    summary="Clear a project's retention policy",
)
async def clear_policy(ctx: Ctx, project_id: ProjectIdPath) -> PolicyBody:
    async def work() -> PolicyBody:
        await ctx.mgr.set_policy(project_id, None)
        return PolicyBody(project_id=project_id, policy=None)

    return await _project(ctx, project_id, work)


@router.post(
    "/backup/forget/{project_id}",
    response_model=ForgetResult,
    responses={**NOT_FOUND, **CONFLICT, **STORAGE_FULL},
    tags=["retention"],
    summary="Apply retention rules: every backup's decision and reasons; unless dry_run, "
    "remove (restorable for the grace period) and reclaim",
)
async def forget(ctx: Ctx, project_id: ProjectIdPath, body: ForgetBody) -> ForgetResult:
    """A policy whose rules keep none of the completed backups is refused (400), as is a
    project without a policy when none is given."""

    async def work() -> ForgetResult:
        if body.dry_run:
            return await ctx.reads.run(
                partial(ctx.mgr.forget_blocking, dry_run=True, max_unused=body.max_unused),
                project_id,
                body.policy,
            )
        return await ctx.jobs.run_long(
            lambda: ctx.mgr.forget(
                project_id,
                body.policy,
                max_unused=body.max_unused,
                progress=ctx.jobs.publish_progress,
            )
        )

    return await _project(ctx, project_id, work)


def _marker(op: str, summary: str) -> None:
    @router.post(
        f"/backup/{op}/{{project_id}}/{{backup_id}}",
        response_model=BackupMetadata,
        responses={**NOT_FOUND, **CONFLICT},
        tags=["retention"],
        summary=summary,
        name=f"{op}_backup",
    )
    async def mark(ctx: Ctx, project_id: ProjectIdPath, backup_id: BackupIdPath) -> Any:
        _checked(backup_id, "backup_id")
        return await _project(ctx, project_id, lambda: getattr(ctx.mgr, op)(project_id, backup_id))


_marker("protect", "Protect a backup: no retention rule removes it, delete refuses it")
_marker("unprotect", "Lift a backup's protection")
_marker("undelete", "Bring back a backup retention removed, while its grace period lasts")


@router.get(
    "/projects/{project_id}/stats",
    response_model=ProjectStats,
    responses={**NOT_FOUND, **DAMAGED},
    tags=["projects"],
    summary="A project's history (one row per backup, oldest first) and totals, as `stats`",
)
async def project_stats(
    ctx: Ctx,
    project_id: ProjectIdPath,
    since: Annotated[str | None, Query(max_length=64, description=WHEN_DOC)] = None,
) -> Any:
    when = _query_value(parse_when, since, "since")
    return await _project(
        ctx, project_id, lambda: ctx.reads.run(ctx.mgr.stats_blocking, project_id, when)
    )


@router.get(
    "/backup/removed/{project_id}",
    response_model=list[BackupMetadata],
    responses={**NOT_FOUND, **DAMAGED},
    tags=["retention"],
    summary="Backups retention removed that are still restorable (their grace period)",
)
async def removed_backups(ctx: Ctx, project_id: ProjectIdPath) -> Any:
    return await _project(
        ctx, project_id, lambda: ctx.reads.run(ctx.mgr.removed_blocking, project_id)
    )


@router.get(
    "/jobs/{job_id}",
    response_model=Job,
    responses={404: _err("Unknown (or long forgotten) job")},
    tags=["jobs"],
    summary="A restore, copy or queued create: queued, running, or its result or error",
)
async def get_job(ctx: Ctx, job_id: JobIdPath) -> Job:
    job = ctx.jobs.get(_checked_job_id(job_id))
    if job is None:
        raise ApiError(404, f"unknown job {job_id!r}", type="not_found", loc=["path", "job_id"])
    return job


SSE_DOC = (
    "Server-sent events of the project: `ready` once, then `progress` (ProgressEvent), `log` "
    "(a log record), `backup` (BackupMetadata as it changes), `job` (a restore or copy Job "
    "when it ends), `lagged` ({dropped}) when this client fell behind and lost events; a "
    "`: keepalive` comment every 15 s. Data lines are JSON."
)


@router.get(
    "/events/{project_id}",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": SSE_DOC,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        429: _err("Too many event streams open"),
    },
    tags=["events"],
    summary="Live progress and log events of a project (text/event-stream)",
)
async def events(ctx: Ctx, project_id: ProjectIdPath) -> StreamingResponse:
    """Any valid project id may be followed, also one whose first backup is yet to come."""
    _checked(project_id, "project_id")
    try:
        ctx.hub.check_capacity()
    except TooManySubscribers as exc:
        raise ApiError(429, str(exc), type="too_many_streams") from None
    return StreamingResponse(
        ctx.hub.stream(project_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
