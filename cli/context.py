"""What every command shares: the exit codes, the usage error, and the `Context` a command
runs in (the parsed arguments, the root, a manager made on first use, a progress bar).

The engine is imported only when a command first asks for the manager, so that `--help` and
a usage error stay fast, and this face never imports textual or fastapi.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from cli import render
from cli.password import PasswordSource, TargetPasswordSource
from core.config import ENV_REPOSITORY, resolve_root

if TYPE_CHECKING:  # names for the annotations: importing them would cost `--help` the engine's
    import asyncio

    from pydantic import BaseModel

    from cli.progress_bar import ProgressBar
    from core.service import Engine

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_DAMAGED = 4
EXIT_INTERRUPTED = 130

T = TypeVar("T")


class UsageError(Exception):
    """Bad command-line usage: one line, exit code 2."""


class Context:
    """What every command needs: the root, the output mode, a manager, a progress bar."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json: bool = bool(args.json)
        self.root_arg: str | None = args.root
        self.root: Path = resolve_root(args.root)
        if getattr(args, "repo", None):
            # one rule for every face this process starts (the TUI, `serve`) and every
            # command it prints: the engine reads the repository from the environment
            os.environ[ENV_REPOSITORY] = args.repo
        self.repository: str | None = os.environ.get(ENV_REPOSITORY) or None
        refuse_process_bound(self.repository, "the repository")
        self._manager: Engine | None = None
        self.passwords = PasswordSource(
            getattr(args, "password_file", None),
            getattr(args, "password_command", None),
            # only `create --encrypt` makes the project itself (copy --encrypt: its target)
            creating=bool(getattr(args, "encrypt", False))
            and getattr(args, "command", None) == "create",
            new_file=getattr(args, "new_password_file", None),
        )

    def unlock_ahead(self) -> None:
        """For a command on one encrypted project whose password is given without a
        terminal: its key derivation starts now, while the engine is imported."""
        project = getattr(self.args, "project", None)
        if isinstance(project, str) and project:
            from core.unlock_ahead import start

            start(
                self.root,
                self.repository,
                project,
                self.passwords.given_for,
                creating=self.passwords.creating,
            )

    @property
    def manager(self) -> Engine:
        if self._manager is None:
            from core.manager import BackupManager  # the engine; imported only when needed

            to_password = TargetPasswordSource(
                getattr(self.args, "to_password_file", None),
                getattr(self.args, "to_password_command", None),
                self.passwords,
            )
            now = getattr(self.args, "now", None)  # run-due's hidden --now: the engine's too
            self._manager = BackupManager(
                self.root,
                clock=None if now is None else (lambda: now),
                password=self.passwords,
                # a password given for a copy's target is asked for an encrypted target:
                # a new one is never created plain with it (as if --encrypt)
                encrypt=bool(
                    getattr(self.args, "encrypt", 0)
                    or getattr(self.args, "to_password_file", None)
                    or getattr(self.args, "to_password_command", None)
                ),
                to_password=to_password,
                password_files=[
                    f
                    for f in (
                        getattr(self.args, name, None)
                        for name in ("password_file", "to_password_file", "new_password_file")
                    )
                    if f
                ],
            )
        return self._manager

    def warn_unlogged(self) -> None:
        """One warning line when the logs refused a line (a link planted in them): the
        command itself went on, as it does whenever a log line cannot be written."""
        if self._manager is None:
            return
        from core.logger import LogRefused

        error = self._manager.logger.last_error
        if isinstance(error, LogRefused):
            render.error_line(str(error), kind="warning")

    def backup_bytes_out(self, command: str, what: str) -> BinaryIO:
        """stdout, for a backup's bytes (`cat`, `dump`): one line, nothing written, when it is
        closed (`>&-`: Python then gives no stream) or a file inside a repository or the logs
        (design I3)."""
        if sys.stdout is None:
            raise UsageError(f"{command}: stdout is closed: send {what} to a file or a pipe")
        self.manager.refuse_output_inside(sys.stdout.fileno(), command)
        sys.stdout.flush()
        return sys.stdout.buffer

    def progress(self) -> ProgressBar:
        """A progress bar on stderr, drawing only on a terminal and never with --json."""
        from cli.progress_bar import ProgressBar

        enabled = None if not self.json else False
        return ProgressBar(sys.stderr, enabled=enabled)

    def emit(self, value: BaseModel | Sequence[BaseModel]) -> None:
        """--json output: the model(s), and nothing else, on stdout."""
        render.emit(value)


def refuse_process_bound(url: str | None, what: str) -> None:
    """UsageError for a store that ends with this process (`memory://`) named as `what`."""
    from core.config import process_bound, process_bound_refusal

    if url and process_bound(url):
        raise UsageError(process_bound_refusal(url, what))


#: The process's one event loop, made by the first `run` and closed by `close_loop`.
_runner: asyncio.Runner | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one manager coroutine. Ctrl-C cancels its task (so the core cleans up and marks a
    backup FAILED "cancelled"); the runner then raises KeyboardInterrupt, handled by main().

    Every call of a command shares one loop and its worker threads (`close_loop` ends them).
    The result is handed back beside the task, not as its result: the runner takes its
    Ctrl-C handler back through `signal.signal`, whose enum lookup formats the old handler,
    and so the task with its result, with repr(); for a restore's result of thousands of
    entries, tens of milliseconds spent on a string nobody reads."""
    global _runner
    import asyncio  # only the commands that run the engine pay for it

    if _runner is None:
        _runner = asyncio.Runner()
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    _runner.run(main())
    return box[0]


def close_loop() -> None:
    """Close the loop `run` made, waiting for its worker threads (as asyncio.run does)."""
    global _runner
    if _runner is not None:
        runner, _runner = _runner, None
        runner.close()


def root_opt(ctx: Context) -> list[str]:
    """The options that name this repository, for a command printed to be run again."""
    return ["--root", str(ctx.root)] + (["--repo", ctx.repository] if ctx.repository else [])
