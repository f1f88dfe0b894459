"""Who may talk to the API: the origin gate, then the bearer token.

Both checks are ASGI middleware rather than FastAPI dependencies so that they run before
anything else, including body parsing: a refused request has touched nothing, not even had its
JSON read, whatever FastAPI or Starlette version serves it.

Cross-site requests (CSRF, DNS rebinding) are refused by `OriginMiddleware`, with or without
a token: a request whose `Origin` header is present and is not the server's own origin (the
origin of its Host header, or http://127.0.0.1|localhost|[::1]:PORT of the socket it came in
on), or whose `Sec-Fetch-Site` is `cross-site` (or `same-site` for a method that changes
something), gets 403. A page in a browser cannot read the token, so with a token the check
changes nothing for a legitimate client; it is applied anyway so that both modes behave alike
and a token leaked into a browser still cannot be used from another site. Clients that send
neither header (curl, scripts, the TUI) are unaffected. That every body must be JSON (415
otherwise, so no browser form or "simple request" can carry one) is `api.limits`' rule."""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import send_error
from core.config import ENV_TOKEN

#: The only path answered without a token (it reveals nothing but "ok").
PUBLIC_PATHS = frozenset({"/api/v1/health"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
#: Methods that change something: refused even from a page of the same site.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


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

    def __init__(
        self, app: ASGIApp, *, token: str | None, public: frozenset[str] = PUBLIC_PATHS
    ) -> None:
        self.app = app
        self._token = token.encode("utf-8") if token is not None else None
        self._public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._public:
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


def _origin_key(origin: str) -> str:
    """An origin compared case-insensitively and without its scheme's default port."""
    origin = origin.strip().lower().rstrip("/")
    scheme, sep, rest = origin.partition("://")
    if rest.rfind(":") > rest.rfind("]"):  # a port (not a colon of an IPv6 address)
        host, _, port = rest.rpartition(":")
        if port == str(_DEFAULT_PORTS.get(scheme)):
            rest = host
    return f"{scheme}{sep}{rest}"


def own_origins(scope: Scope, host_header: str) -> set[str]:
    """The origins a page served by this server would have: that of the Host header the
    request names, and the loopback names with the port the request came in on."""
    scheme = str(scope.get("scheme", "http"))
    origins = {_origin_key(f"{scheme}://{host_header}")} if host_header else set()
    server = scope.get("server")
    if server and server[1] is not None:
        for name in ("127.0.0.1", "localhost", "[::1]"):
            origins.add(_origin_key(f"{scheme}://{name}:{server[1]}"))
    return origins


def cross_site_reason(scope: Scope, headers: dict[str, bytes]) -> tuple[str, str] | None:
    """Why a request comes from another site (the message and the header), or None."""
    fetch_site = headers.get("sec-fetch-site", b"").decode("latin-1").strip().lower()
    if fetch_site == "cross-site" or (
        fetch_site == "same-site" and scope.get("method", "GET").upper() in UNSAFE_METHODS
    ):
        return (f"refused: a {fetch_site} request (Sec-Fetch-Site)", "Sec-Fetch-Site")
    origin = headers.get("origin")
    if origin is not None:
        host = headers.get("host", b"").decode("latin-1").strip()
        if _origin_key(origin.decode("latin-1")) not in own_origins(scope, host):
            return ("refused: the request's Origin is not this server's own", "Origin")
    return None


class OriginMiddleware:
    """403 for a request a web page of another site made (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
            reason = cross_site_reason(scope, headers)
            if reason is not None:
                msg, header = reason
                await send_error(send, 403, msg, type="forbidden_origin", loc=["header", header])
                return
        await self.app(scope, receive, send)
