"""`nexus-backup serve`: checks the configuration is safe, then runs uvicorn.

It refuses to listen beyond loopback without a token, and says loudly when it runs without
one; an allowed directory that does not exist is an error, none at all a warning (every
create and restore will then be refused)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from api.auth import ENV_TOKEN, TokenError, is_loopback, load_token
from api.pools import MAX_RUNNING
from core.config import short_token

log = logging.getLogger("nexus_backup.api")


def _fail(message: str) -> int:
    print(f"nexus-backup serve: {message}", file=sys.stderr)
    return 2


def serve(
    root: Path,
    *,
    host: str,
    port: int,
    token: str | None,
    allowed_dirs: list[Path],
    token_file: Path | None = None,
    max_running: int = MAX_RUNNING,
    password: str | None = None,
    password_files: list[str] | None = None,
    encrypt: bool = False,
    run_schedules: bool = False,
    metrics_public: bool = False,
) -> int:
    """Serve the API until interrupted; the exit code (0, or 2 for an unsafe or bad setup,
    1 when the server could not start, e.g. the port is taken). `max_running`: long
    operations (create, restore, delete) run at once; more wait as queued jobs. `password`
    opens the encrypted projects (read once by the caller: a server never prompts;
    `password_files`: where from, kept from every restore);
    `encrypt`: the projects it creates are encrypted under it. `run_schedules`: it also
    runs the scheduled backups that are due, every minute (`run-due`'s check).
    `metrics_public`: /metrics answers without the token."""
    try:
        token = load_token(token, token_file)
    except TokenError as exc:
        return _fail(str(exc))
    if token is None and not is_loopback(host):
        return _fail(
            f"refusing to listen on {host} without a token: give --token, --token-file or "
            f"{ENV_TOKEN}, or listen on 127.0.0.1"
        )
    if not 0 <= port <= 65535:
        return _fail(f"invalid port {port}")
    if max_running < 1:
        return _fail(f"at least one operation must be allowed to run, not {max_running}")
    dirs: list[Path] = []
    for d in allowed_dirs:
        real = Path(os.path.realpath(d))
        if not real.is_dir():
            return _fail(f"allowed directory {d} does not exist or is not a directory")
        dirs.append(real)
    if token is not None and (why := short_token(token)):
        return _fail(why)

    import uvicorn

    from api.app import create_app
    from core.scheduler import SERVE_INTERVAL

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    banner = "!" * 72
    if token is None:
        log.warning(
            "%s\nRUNNING WITHOUT A TOKEN: anyone who can reach %s:%d may create, restore "
            "and delete backups.\nSet --token, --token-file or %s for anything beyond a "
            "quick local test.\n%s",
            banner,
            host,
            port,
            ENV_TOKEN,
            banner,
        )
    if dirs:
        log.info("allowed directories: %s", ", ".join(map(str, dirs)))
    else:
        log.warning("no --allow-dir given: every create and restore will be refused (403)")
    if password is None:
        log.info("no password given: encrypted projects answer 423 (locked)")
    app = create_app(
        root,
        token=token,
        allowed_dirs=dirs,
        max_running=max_running,
        password=password,
        password_files=password_files or [],
        encrypt=encrypt,
        run_schedules=SERVE_INTERVAL if run_schedules else None,
        metrics_public=metrics_public,
    )
    if run_schedules:
        log.info("running the scheduled backups that are due, every %.0fs", SERVE_INTERVAL)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return 0
    return 0 if server.started else 1
