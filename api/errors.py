"""One JSON error shape for every failure, and no traceback ever reaching a client.

Core errors map by their `http_status`; pydantic's 422 keeps only `loc`, `msg` and `type`
(never the echoed input, which may be large or sensitive); a true bug is logged here with its
traceback and answered with a bare JSON 500."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import ErrorBody, ErrorItem
from core.errors import NexusError

log = logging.getLogger("nexus_backup.api")

Loc = Sequence[str | int]


class ApiError(Exception):
    """An error the API itself decides on (403 path refused, 422 field checks, ...)."""

    def __init__(
        self,
        status_code: int,
        msg: str,
        *,
        type: str,
        loc: Loc = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status_code = status_code
        self.msg = msg
        self.type = type
        self.loc = list(loc)
        self.headers = headers

    @classmethod
    def from_core(cls, exc: NexusError, loc: Loc = ()) -> ApiError:
        """The API form of a core error, optionally naming the field it is about."""
        return cls(exc.http_status, str(exc), type=error_type(exc), loc=loc)


def error_type(exc: BaseException) -> str:
    """`NotFound` -> "not_found": the machine-readable kind of a core error."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_body(msg: str, *, type: str, loc: Loc = ()) -> dict:
    return ErrorBody(detail=[ErrorItem(loc=list(loc), msg=msg, type=type)]).model_dump()


def error_response(
    status_code: int, msg: str, *, type: str, loc: Loc = (), headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(msg, type=type, loc=loc), status_code, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.msg, type=exc.type, loc=exc.loc, headers=exc.headers)


async def _core_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NexusError)
    return error_response(exc.http_status, str(exc), type=error_type(exc))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = [
        ErrorItem(
            loc=[p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
            msg=str(err.get("msg", "invalid value")),
            type=str(err.get("type", "value_error")),
        )
        for err in exc.errors()
    ]
    return JSONResponse(ErrorBody(detail=items).model_dump(), 422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
        exc.status_code, "http_error"
    )
    loc = ["body"] if exc.status_code == 413 else []
    return error_response(exc.status_code, str(exc.detail), type=kind, loc=loc, headers=exc.headers)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(NexusError, _core_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


async def send_error(
    send: Send,
    status_code: int,
    msg: str,
    *,
    type: str,
    loc: Loc = (),
    headers: dict[str, str] | None = None,
) -> None:
    """Answer with the error shape from raw ASGI middleware, outside FastAPI's handlers."""
    body = json.dumps(error_body(msg, type=type, loc=loc)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status_code, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ShieldMiddleware:
    """Outermost layer: an exception nobody handled is a bug; log it, answer a plain 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await send_error(
                    send, 500, "internal error (logged on the server)", type="internal"
                )
