"""What a request body may be: JSON (415 otherwise), bounded in size (413) and in nesting (422).

`BodyGuardMiddleware` reads the body itself, within the bound, before the app sees it, so no
client can make the server buffer without end, no browser form or text/plain "simple request"
can carry a body (a cross-site page cannot send application/json without a CORS preflight this
server never grants), and no parser, FastAPI's or pydantic's, ever meets a document nested deep
enough to exhaust its recursion limit. These rules do not depend on how the installed FastAPI
treats content types or parses JSON."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import send_error

#: Every body this API accepts is a small JSON object; 1 MiB leaves room for big tag maps.
MAX_BODY_BYTES = 1024 * 1024
#: No body of this API nests deeper than its `extra` map (core.models.MAX_EXTRA_DEPTH) inside
#: the request object; anything far deeper is refused before it is parsed.
MAX_BODY_DEPTH = 32

_JSON_TYPE = "application/json"
_UTF8 = frozenset({"utf-8", "utf8"})
#: A JSON string (escapes included), written so that the regex engine never backtracks.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_content_type(value: str) -> bool:
    """`application/json`, optionally with a UTF-8 charset (JSON is UTF-8, RFC 8259)."""
    media, *params = value.split(";")
    if media.strip().lower() != _JSON_TYPE:
        return False
    for param in params:
        if not param.strip():
            continue
        key, sep, val = param.partition("=")
        charset = val.strip().strip('"').lower()
        if not sep or key.strip().lower() != "charset" or charset not in _UTF8:
            return False
    return True


def json_depth(raw: bytes, stop: int | None = None) -> int:
    """How deep arrays and objects nest in the JSON text `raw`, found without parsing it (and
    without recursion): strings are blanked out, then brackets are counted. With `stop`, the
    count ends as soon as the depth passes it."""
    brackets = _STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
            if stop is not None and deepest > stop:
                break
        else:
            depth -= 1
    return deepest


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value
    return None


class BodyGuardMiddleware:
    """415 for a body that is not declared JSON, 413 for one over `max_bytes` (at once when
    Content-Length says so, else as soon as the streamed body passes the bound), 422 for one
    nested deeper than `max_depth`; otherwise the app gets the body, read whole."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_BODY_DEPTH
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        try:
            declared = int(length) if length is not None else 0
        except ValueError:
            declared = -1
        if declared < 0 or declared > self.max_bytes:
            await self._too_large(send)
            return
        if declared == 0 and not chunked:
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or b"").decode("latin-1")
        if not json_content_type(content_type):
            await send_error(
                send,
                415,
                "the request body must be JSON: send 'Content-Type: application/json'",
                type="unsupported_media_type",
                loc=["header", "Content-Type"],
            )
            return
        body = await self._read(receive)
        if body is None:  # the client went away
            return
        if len(body) > self.max_bytes:
            await self._too_large(send)
            return
        if json_depth(body, self.max_depth) > self.max_depth:
            await send_error(
                send,
                422,
                f"the JSON body nests deeper than {self.max_depth} levels",
                type="too_deep",
                loc=["body"],
            )
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or as much as shows it is over the bound; None on disconnect."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            if size > self.max_bytes or not message.get("more_body", False):
                return b"".join(parts)

    async def _too_large(self, send: Send) -> None:
        await send_error(
            send,
            413,
            f"request body larger than {self.max_bytes} bytes",
            type="body_too_large",
            loc=["body"],
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then waits on the client (for
    its disconnect) as the original would."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# --- bounded work per request of the compare-and-search endpoints (issue 17, api/compare.py) ---

#: Changes one diff answer lists at most (`truncated` then, and `offset` pages on).
MAX_DIFF_CHANGES = 5000
#: Paths one find answer lists at most.
MAX_FIND_PATHS = 1000
#: Entries one ls answer lists at most.
MAX_LS_ENTRIES = 5000
