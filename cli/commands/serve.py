"""`serve`: run the HTTP API (`api.server.serve`, imported only here) on the repository."""

from __future__ import annotations

import os
from pathlib import Path

from cli.context import Context, UsageError
from cli.launch import entry_point, exit_code
from cli.password import HOW
from core.config import ENV_TOKEN, MIN_TOKEN_LENGTH, check_directory, short_token
from core.errors import NexusError, describe_os_error


def cmd_serve(ctx: Context) -> int:
    a = ctx.args
    token = a.token
    if a.token_file:
        try:
            token = Path(a.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise NexusError(describe_os_error(exc, "cannot read --token-file")) from None
        if not token:
            raise UsageError(f"--token-file {a.token_file} is empty")
    why = short_token(token or os.environ.get(ENV_TOKEN) or "0" * MIN_TOKEN_LENGTH)
    if why:
        raise UsageError(f"serve: {why}")
    check_directory(ctx.root)  # before the server says anything
    # read once, now: a server never prompts (nobody would answer); without one, an
    # encrypted project's requests are answered 423
    password = ctx.passwords.given()
    if a.encrypt and password is None:
        raise UsageError(f"serve --encrypt: new projects need a password ({HOW})")
    allowed = [Path(d).expanduser().absolute() for d in a.allowed_dirs]
    serve = entry_point("api.server", "serve", "the HTTP API")
    return exit_code(
        serve(
            ctx.root,
            host=a.host,
            port=a.port,
            token=token,
            allowed_dirs=allowed,
            max_running=a.max_running,
            password=password,
            password_files=[ctx.passwords.file] if ctx.passwords.file else [],
            encrypt=a.encrypt,
            **({"run_schedules": True} if a.run_schedules else {}),
            metrics_public=a.metrics_public,
        )
    )
