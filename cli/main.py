"""`nexus-backup`: the command-line program (see docs/CONTRACT.md, "CLI").

    nexus-backup [--root DIR] [--json] COMMAND ...

Human output by default (humanized sizes and times, aligned tables), `--json` for scripts
(only the pydantic models, as JSON, on stdout). Errors are one line on stderr, never a
traceback; the exit code says what happened (see cli.parser.EXIT_CODES_HELP).

`main()` is the one place that turns what a command raised into that line and its exit code;
`run()`, the installed script, calls it and exits.
This package must stay importable without textual or fastapi: the TUI and the HTTP server are
imported lazily, inside the commands that start them (cli.launch).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli import render
from cli.commands.tui import cmd_tui
from cli.context import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    UsageError,
    close_loop,
)
from cli.parser import build_parser
from cli.render import error_line
from core.errors import Cancelled, NexusError, describe_os_error
from core.malloc import tune_malloc

if TYPE_CHECKING:
    from pydantic import ValidationError


#: What a path argument that is not UTF-8 is told (names inside a backup may be any bytes;
#: the data directory's and a restore target's own paths are stored and shown as text).
NOT_UTF8 = (
    "the path is not valid UTF-8: the data directory and a restore target need UTF-8 paths"
    " (the names inside them may be any bytes)"
)


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field: ``project_id: invalid project_id '..': use ...``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "string_unicode":  # a path argument with bytes that are not UTF-8
            msg = NOT_UTF8
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid input: " + "; ".join(parts) if parts else str(exc)


def _loaded(module: str, name: str) -> tuple[type[BaseException], ...]:
    """`module.name` if that module was imported, else nothing: an exception class of a
    module this process never imported cannot have been raised, and importing it only to
    test for it would cost every command (`--help` too) its import time."""
    mod = sys.modules.get(module)
    return (getattr(mod, name),) if mod is not None else ()


def _debug() -> bool:
    return os.environ.get("NEXUS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _setup_streams() -> None:
    # File names need not be valid UTF-8 (surrogateescape): print them escaped, never crash.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def _wants_json(argv: list[str] | None, args: object) -> bool:
    """--json, also when the arguments were too bad to parse (then it is looked for as given)."""
    if args is not None:
        return bool(getattr(args, "json", False))
    given = sys.argv[1:] if argv is None else argv
    return "--json" in given[: given.index("--")] if "--" in given else "--json" in given


def _report(message: str, code: int, *, json_out: bool, kind: str = "error") -> int:
    """The one error line on stderr; with --json also `{"error": {...}}` on stdout, so that a
    script reading stdout learns what failed; returns the exit code."""
    error_line(message, kind=kind)
    if json_out:
        render.emit_error(message, code, kind)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the program with `argv` (default: sys.argv[1:]); returns the exit code."""
    tune_malloc()
    _setup_streams()
    parser = build_parser()
    args = None
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        func: Callable[[Context], int] = getattr(args, "func", cmd_tui)
        ctx = Context(args)
        ctx.unlock_ahead()
        try:
            return func(ctx)
        finally:
            close_loop()
            ctx.warn_unlogged()
    except BrokenPipeError:
        # stdout closed early (`nexus-backup list ... | head`): not worth a message.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_ERROR
    except BaseException as exc:
        if not isinstance(
            exc, (Exception, KeyboardInterrupt, *_loaded("asyncio", "CancelledError"))
        ):
            raise  # SystemExit from deeper down, GeneratorExit: not an error to report
        message, code, kind = describe_failure(exc)
        return _report(message, code, json_out=_wants_json(argv, args), kind=kind)


def describe_failure(exc: BaseException) -> tuple[str, int, str]:
    """What a command raised, as (the one line, the exit code, its kind): the one place
    that maps an exception to what the user sees."""
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE, "error"
    if isinstance(exc, (KeyboardInterrupt, Cancelled, *_loaded("asyncio", "CancelledError"))):
        return "interrupted", EXIT_INTERRUPTED, "error"
    if isinstance(exc, NexusError):
        return str(exc) or type(exc).__name__, int(getattr(exc, "exit_code", EXIT_ERROR)), "error"
    if isinstance(exc, _loaded("pydantic_core", "ValidationError")):
        return describe_validation_error(exc), EXIT_USAGE, "error"
    if isinstance(exc, OSError):
        if _debug():
            traceback.print_exception(exc)
        return describe_os_error(exc), EXIT_ERROR, "error"
    if _debug():
        traceback.print_exception(exc)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"{detail} (run with NEXUS_DEBUG=1 for the traceback)", EXIT_ERROR, "internal error"


#: The cyclic collector's full collections, for the program's own process: one after this many
#: collections of the middle generation (Python's default is 10). A backup or restore keeps
#: tens of thousands of objects in flight (the scan's items, the index's locations), and each
#: full collection walked all of them with the GIL held, finding next to nothing: a tenth of
#: a backup of many small files. Young garbage is still collected as often as before.
FULL_COLLECTION_EVERY = 1000


def run() -> None:
    """The installed script: `main` with full collections made rare (FULL_COLLECTION_EVERY),
    then the exit. Everything still alive then lives until the process ends, so it is frozen
    out of the collector first: the interpreter's teardown otherwise walks every object (the
    engine's models, pydantic's schemas) in collection after collection, a fifth of a quick
    command's time. The teardown itself still runs: files are flushed and closed, atexit
    handlers called. (Figures: benchmarks/LATEST.md.) main() is left as it is, for callers
    in a process of their own."""
    young, middle, _full = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
