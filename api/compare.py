"""The compare-and-search endpoints (issue 17): a diff of two backups, find, ls, and a file's
download, under the same auth as every endpoint (the app's middleware).

Each answer is bounded (api.limits): a diff lists at most `limit` changes from `offset`
(the totals always count all of them; `truncated` says more follow), find and ls at most
their limit. The work itself is one streamed pass over each manifest. Paths inside a backup
are names looked up in its manifest, never paths on the server: `..` is refused and nothing
outside the repository is read, so no --allow-dir applies; a diff against the live data
directory (a server path) is the CLI's and the TUI's, not this API's. A name that is not
UTF-8 is given as `path_b64` (as the answers give it).
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.errors import ApiError
from api.limits import MAX_DIFF_CHANGES, MAX_FIND_PATHS, MAX_LS_ENTRIES
from api.routes import (
    COMMON_ERRORS,
    CONFLICT,
    NOT_FOUND,
    BackupIdPath,
    Ctx,
    ProjectIdPath,
    _checked,
)
from core.compare import DiffResult, FindResult, LsResult
from core.compare_names import LIVE

router = APIRouter(prefix="/api/v1", responses=COMMON_ERRORS, tags=["compare"])

PathQuery = Annotated[
    str, Query(max_length=4096, description="a path inside the backup ('' for the top)")
]
PathB64Query = Annotated[
    str | None,
    Query(max_length=8192, description="the path's bytes in base64 (a name that is not UTF-8)"),
]


def _inside_path(path: str, path_b64: str | None) -> str:
    """The in-backup path as the engine takes it (surrogate escapes for bytes not UTF-8)."""
    if path_b64 is None:
        return path
    try:
        raw = base64.b64decode(path_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            422, "path_b64 is not base64", type="value_error", loc=["query", "path_b64"]
        ) from None
    return os.fsdecode(raw)


def _ids(project_id: str, *backup_ids: str) -> None:
    _checked(project_id, "project_id")
    for b in backup_ids:
        _checked(b, "backup_id")
        if b == LIVE:
            raise ApiError(
                422,
                "a diff against the live data directory is not served over HTTP: name a backup",
                type="value_error",
                loc=["path", "backup_id"],
            )


@router.get(
    "/backup/diff/{project_id}/{a}/{b}",
    response_model=DiffResult,
    responses={**NOT_FOUND, **CONFLICT},
    summary="What was added, removed and changed from backup a to backup b",
)
async def diff(
    ctx: Ctx,
    project_id: ProjectIdPath,
    a: BackupIdPath,
    b: BackupIdPath,
    path: PathQuery = "",
    path_b64: PathB64Query = None,
    limit: Annotated[int, Query(ge=1, le=MAX_DIFF_CHANGES)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Any:
    _ids(project_id, a, b)
    inside = _inside_path(path, path_b64)

    def work() -> DiffResult:
        run = ctx.mgr.diff_run_blocking(project_id, a, b, path=inside)
        listed, seen = [], 0
        for change in run.changes:  # every change is counted; only a page is kept
            if offset <= seen < offset + limit:
                listed.append(change)
            seen += 1
        return DiffResult(
            project_id=project_id,
            a=run.a,
            b=run.b,
            path=inside.strip("/"),
            changes=listed,
            totals=run.totals,
            truncated=seen > offset + limit,
            warnings=run.warnings,
        )

    return await ctx.reads.run(work)


@router.get(
    "/backup/find/{project_id}",
    response_model=FindResult,
    responses=NOT_FOUND,
    summary="The backups holding a path that matches q (a glob, else a substring)",
)
async def find(
    ctx: Ctx,
    project_id: ProjectIdPath,
    q: Annotated[str, Query(min_length=1, max_length=1024, description="glob or substring")],
    all_projects: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_FIND_PATHS)] = 100,
) -> Any:
    _checked(project_id, "project_id")
    return await ctx.reads.run(
        lambda: ctx.mgr.find_blocking(project_id, q, all_projects=all_projects, limit=limit)
    )


@router.get(
    "/backup/ls/{project_id}/{backup_id}",
    response_model=LsResult,
    responses={**NOT_FOUND, **CONFLICT},
    summary="The entries of a backup below a path (a directory's size: the files below it)",
)
async def ls(
    ctx: Ctx,
    project_id: ProjectIdPath,
    backup_id: BackupIdPath,
    path: PathQuery = "",
    path_b64: PathB64Query = None,
    recursive: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LS_ENTRIES)] = 1000,
) -> Any:
    _ids(project_id, backup_id)
    inside = _inside_path(path, path_b64)
    return await ctx.reads.run(
        lambda: ctx.mgr.ls_blocking(project_id, backup_id, inside, recursive=recursive, limit=limit)
    )


@router.get(
    "/backup/file/{project_id}/{backup_id}",
    responses={
        **NOT_FOUND,
        **CONFLICT,
        200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"},
    },
    response_class=StreamingResponse,
    summary="Download one file of a backup (streamed; every chunk checked against its hash)",
)
async def download(
    ctx: Ctx,
    project_id: ProjectIdPath,
    backup_id: BackupIdPath,
    path: PathQuery = "",
    path_b64: PathB64Query = None,
) -> StreamingResponse:
    _ids(project_id, backup_id)
    inside = _inside_path(path, path_b64)
    entry, pieces = await ctx.reads.run(ctx.mgr.open_file_blocking, project_id, backup_id, inside)
    name = quote(os.fsencode(entry.name), safe="")
    return StreamingResponse(
        pieces,  # a blocking iterator: Starlette runs it in a thread, a chunk at a time
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(entry.size),
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
        },
    )
