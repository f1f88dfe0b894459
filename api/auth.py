"""Bearer-token authentication: where the token comes from, and the gate every request passes.

The check is ASGI middleware rather than a FastAPI dependency so that it runs before anything
else, including body parsing: a request without a valid token is refused with 401 and has
touched nothing, not even had its JSON read."""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import send_error

ENV_TOKEN = "NEXUS_BACKUP_TOKEN"
#: The only path answered without a token (it reveals nothing but "ok").
PUBLIC_PATHS = frozenset({"/api/v1/health"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class TokenError(ValueError):
    """The token could not be obtained as configured (unreadable or empty file)."""


def load_token(
    token: str | None = None, token_file: str | os.PathLike[str] | None = None
) -> str | None:
    """The token from the option, else the file, else $NEXUS_BACKUP_TOKEN, else None.

    A file is read whole and stripped (a trailing newline is not part of the token); an empty
    token is an error, never silently "no authentication"."""
    if token is None and token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"cannot read token file {token_file}: {exc}") from None
        if not token:
            raise TokenError(f"token file {token_file} is empty")
    if token is None:
        token = os.environ.get(ENV_TOKEN) or None
    if token is not None and not token.strip():
        raise TokenError("the token is empty")
    return token


def is_loopback(host: str) -> bool:
    """True for a listen address (or Host header name) that only this machine can reach."""
    host = host.strip().strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name of a Host header without its port: "[::1]:8765" -> "::1"."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class BearerAuthMiddleware:
    """Refuses (401, WWW-Authenticate) any request without `Authorization: Bearer <token>`.

    With no token configured (loopback only, enforced by `serve`), it instead insists on a
    loopback Host header, so that a web page in a local browser cannot reach the API through
    DNS rebinding."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self._token = token.encode("utf-8") if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        if self._token is None:
            host = _host_name(headers.get("host", b"").decode("latin-1"))
            if not is_loopback(host):
                await send_error(
                    send,
                    403,
                    "this server runs without a token and accepts only loopback Host headers",
                    type="forbidden_host",
                    loc=["header", "Host"],
                )
                return
            await self.app(scope, receive, send)
            return
        given = headers.get("authorization", b"")
        scheme, _, credentials = given.partition(b" ")
        if scheme.lower() != b"bearer" or not credentials.strip():
            await send_error(
                send,
                401,
                "missing bearer token: send 'Authorization: Bearer <token>'",
                type="unauthorized",
                loc=["header", "Authorization"],
                headers={"WWW-Authenticate": 'Bearer realm="nexus-backup"'},
            )
            return
        if not hmac.compare_digest(credentials.strip(), self._token):
            await send_error(
                send,
                401,
                "invalid bearer token",
                type="unauthorized",
                loc=["header", "Authorization"],
                headers={"WWW-Authenticate": 'Bearer realm="nexus-backup", error="invalid_token"'},
            )
            return
        await self.app(scope, receive, send)
