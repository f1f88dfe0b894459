"""A bound on request body size, so that no client can make the server buffer without end."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import send_error

#: Every body this API accepts is a small JSON object; 1 MiB leaves room for big tag maps.
MAX_BODY_BYTES = 1024 * 1024


class _TooLarge(HTTPException):
    """Raised from `receive` mid-body; an HTTPException, so FastAPI's body reading passes it
    on (to the error handlers, which answer 413) instead of calling it a parse error."""


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once when Content-Length says so, else as soon as
    the streamed (chunked) body passes the limit, before the app has seen it whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(413, f"request body larger than {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await send_error(
            send,
            413,
            f"request body larger than {self.max_bytes} bytes",
            type="body_too_large",
            loc=["body"],
        )
