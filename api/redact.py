"""The API never names the repository: its root is replaced by "<repository>" in every answer.

A client only ever names paths under the allowed directories; where the repository lies is the
server's business, and an answer that named it (an OSError's text in an error, the undo hint of
a restore, a log line on the event stream) would tell a client where to aim. Rather than trust
every message of the core to leave the path out, the one rule is enforced here, on the bytes of
every response body, by `RedactMiddleware`: whatever a handler, an error or a stream produces
passes through it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: What a client sees where the repository's root would be.
PLACEHOLDER = b"<repository>"
#: What may follow the root in a text naming it or a path beneath it: a separator, the end,
#: or a character that cannot be part of a path name in a message or a JSON string.
_AFTER = rb"(?=[/\s\"'\\,;:)\]}>]|\Z)"


class Redactor:
    """Replaces the spellings of the repository root (as given, resolved, and as they appear
    inside a JSON string) by PLACEHOLDER, where they stand for the root itself (not for a
    longer name that merely starts with it)."""

    def __init__(self, roots: Iterable[str | os.PathLike[str]]) -> None:
        spellings: set[bytes] = set()
        for root in roots:
            for text in {os.fspath(root), os.path.realpath(root), os.path.abspath(root)}:
                text = text.rstrip(os.sep)
                if len(text) <= 1:
                    continue  # "/" would be every path: nothing can be hidden there
                spellings.add(text.encode("utf-8", "surrogateescape"))
                spellings.add(json.dumps(text)[1:-1].encode())  # escaped as in a JSON string
                spellings.add(json.dumps(text, ensure_ascii=False)[1:-1].encode())
        ordered = sorted(spellings, key=len, reverse=True)
        self._pattern = (
            re.compile(b"(?:" + b"|".join(map(re.escape, ordered)) + b")" + _AFTER)
            if ordered
            else None
        )

    def __call__(self, data: bytes) -> bytes:
        if self._pattern is None or not data:
            return data
        return self._pattern.sub(PLACEHOLDER, data)

    def text(self, value: str) -> str:
        return self(value.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


def _content_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    for key, value in headers:
        if key.lower() == b"content-type":
            return value.lower()
    return b""


class RedactMiddleware:
    """Every response body through `redact`: a streamed one (server-sent events) chunk by
    chunk, where each chunk is whole events; any other body whole, its Content-Length
    corrected."""

    def __init__(self, app: ASGIApp, *, redact: Redactor) -> None:
        self.app = app
        self.redact = redact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "HEAD":  # HEAD: no body
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        streaming = False
        parts: list[bytes] = []

        async def redacting_send(message: Message) -> None:
            nonlocal start, streaming
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                streaming = _content_type(headers).startswith(b"text/event-stream")
                if streaming:
                    await send(message)
                else:
                    start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = message.get("body", b"")
            if streaming:
                await send({**message, "body": self.redact(body)})
                return
            parts.append(body)
            if message.get("more_body", False):
                return
            data = self.redact(b"".join(parts))
            assert start is not None
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]

            headers.append((b"content-length", str(len(data)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, redacting_send)
