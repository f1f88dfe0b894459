"""The app factory: one BackupManager, the shared job runner and event hub, the middleware
stack (shield, redaction of the repository's root, origin, token, body guard) and an OpenAPI
document that states the bearer scheme."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.warnings import UnsupportedFieldAttributeWarning

from api import compare
from api.auth import PUBLIC_PATHS, BearerAuthMiddleware, OriginMiddleware
from api.errors import ShieldMiddleware, install_handlers
from api.events import EventHub
from api.jobs import JobRunner
from api.limits import MAX_BODY_BYTES, BodyGuardMiddleware
from api.metrics import METRICS_PATH, metrics_router
from api.paths import PathPolicy
from api.pools import MAX_RUNNING, ReadPool
from api.redact import RedactMiddleware, Redactor
from api.routes import ApiContext, public, router
from api.watch import Watcher, log_payload
from core.errors import WrongPassword
from core.metrics import instrument_store
from core.service import Engine

log = logging.getLogger("nexus_backup.api")

#: As the CLI names it (cli.password.ENV_PASSWORD; the API does not import the CLI).
ENV_PASSWORD = "NEXUS_BACKUP_PASSWORD"

# FastAPI hands pydantic each body parameter's name as an alias, which pydantic says has no
# effect (once at the schema, once at the first request) when the model builds on first use
# (core.models.Model's defer_build): nothing changes (the OpenAPI schema is byte-identical).
warnings.filterwarnings(
    "ignore", category=UnsupportedFieldAttributeWarning, message="The 'alias' attribute"
)


def _version() -> str:
    try:
        return version("nexus-backup")
    except PackageNotFoundError:
        return "0.0.0"


def _password(password: str | None) -> Callable[[str], str]:
    """The manager's password callable: the server's one password, else a 423 that says how
    to start the server with one."""

    def given(project_id: str) -> str:
        if password is None:
            raise WrongPassword(
                f"project {project_id!r} is encrypted and the server has no password: start "
                f"serve with --password-file F, --password-command CMD or ${ENV_PASSWORD}"
            )
        return password

    return given


async def _run_schedules(manager: Engine, every: float) -> None:
    from core.scheduler import run_periodically

    def said(outcomes: list) -> None:
        for o in outcomes:
            if o.ran or o.status == "failed":
                log.info("scheduled run of %s: %s", o.project_id, o.message)

    await run_periodically(manager, every, said)


def create_app(
    root: str | os.PathLike[str],
    *,
    token: str | None,
    allowed_dirs: Iterable[str | os.PathLike[str]],
    manager: Engine | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_running: int = MAX_RUNNING,
    password: str | None = None,
    password_files: Sequence[str] = (),
    encrypt: bool = False,
    run_schedules: float | None = None,
    metrics_public: bool = False,
) -> FastAPI:
    """The API over the repository at `root`. `token` None means no authentication (only
    for loopback; `serve` enforces that). `manager` replaces the BackupManager, for tests.
    `max_running`: long operations (create, restore, delete) run at once; more are queued.
    `password` opens encrypted projects (one for all; None: they answer 423, never a hang
    on a prompt); with `encrypt`, the projects the API creates are encrypted under it;
    `password_files`, where it was read from: no restore overwrites them.
    `run_schedules`: every so many seconds, run the scheduled backups that are due
    (`serve --run-schedules`: core.scheduler, the same check as `run-due`).
    `metrics_public`: /metrics answers without the token (a Prometheus without one)."""
    if manager is None:
        from core.manager import BackupManager

        manager = BackupManager(
            Path(root),
            password=_password(password),
            encrypt=encrypt,
            password_files=password_files,
        )
    store_requests = instrument_store(manager)  # before any project is opened
    hub = EventHub()
    jobs = JobRunner(manager, hub, max_running=max_running)
    reads = ReadPool()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        unsubscribe = manager.logger.subscribe(
            lambda record: hub.publish(record.project_id, "log", log_payload(record))
        )
        watching = asyncio.create_task(Watcher(manager, hub).run())
        schedules = None
        if run_schedules is not None:
            schedules = asyncio.create_task(_run_schedules(manager, run_schedules))
        try:
            yield
        finally:
            if schedules is not None:
                schedules.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await schedules
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            unsubscribe()
            await jobs.aclose()
            reads.close()

    app = FastAPI(
        title="nexus-backup",
        version=_version(),
        description="HTTP API of nexus-backup: create, restore, list, inspect and delete "
        "backups. Every endpoint but /api/v1/health needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        docs_url=None,  # a browser cannot send the bearer token to load them
        redoc_url=None,
    )
    app.state.ctx = ApiContext(
        mgr=manager, policy=PathPolicy(allowed_dirs), jobs=jobs, hub=hub, reads=reads
    )
    app.state.store_requests = store_requests
    install_handlers(app)
    app.include_router(public)
    app.include_router(router)
    app.include_router(metrics_router)
    app.include_router(compare.router)  # diff, find, ls, file download (issue 17)
    # added innermost first: the shield sees everything; a cross-site request is refused
    # before the token is looked at, and the token is checked before the body is read
    app.add_middleware(BodyGuardMiddleware, max_bytes=max_body_bytes)
    public_paths = PUBLIC_PATHS | ({METRICS_PATH} if metrics_public else set())
    app.add_middleware(BearerAuthMiddleware, token=token, public=public_paths)
    app.add_middleware(OriginMiddleware)
    app.add_middleware(RedactMiddleware, redact=Redactor([manager.root]))  # every answer
    app.add_middleware(ShieldMiddleware)
    _document_bearer(app)
    return app


def _document_bearer(app: FastAPI) -> None:
    """State the bearer scheme in /openapi.json, required everywhere but the public paths."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearerAuth": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"bearerAuth": []}]
            for path in PUBLIC_PATHS:
                for operation in schema.get("paths", {}).get(path, {}).values():
                    operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
