"""`nexus-backup`: the command-line program (see docs/CONTRACT.md, "CLI").

    nexus-backup [--root DIR] [--json] COMMAND ...

Human output by default (humanized sizes and times, aligned tables), `--json` for scripts
(only the pydantic models, as JSON, on stdout). Errors are one line on stderr, never a
traceback; the exit code says what happened (see cli.parser.EXIT_CODES_HELP).

`main()` is the one place that turns what a command raised into that line and its exit code.
This package must stay importable without textual or fastapi: the TUI and the HTTP server are
imported lazily, inside the commands that start them (cli.launch).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import traceback
from collections.abc import Callable

from pydantic import ValidationError

from cli.commands.tui import cmd_tui
from cli.context import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    UsageError,
)
from cli.parser import build_parser
from cli.render import error_line
from core.errors import Cancelled, NexusError, describe_os_error
from core.malloc import limit_malloc_arenas


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field: ``project_id: invalid project_id '..': use ...``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = str(err.get("msg", "invalid value"))
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid input: " + "; ".join(parts) if parts else str(exc)


def _debug() -> bool:
    return os.environ.get("NEXUS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _setup_streams() -> None:
    # File names need not be valid UTF-8 (surrogateescape): print them escaped, never crash.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Run the program with `argv` (default: sys.argv[1:]); returns the exit code."""
    limit_malloc_arenas()
    _setup_streams()
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        func: Callable[[Context], int] = getattr(args, "func", cmd_tui)
        ctx = Context(args)
        return func(ctx)
    except UsageError as exc:
        error_line(str(exc))
        return EXIT_USAGE
    except (KeyboardInterrupt, Cancelled, asyncio.CancelledError):
        error_line("interrupted")
        return EXIT_INTERRUPTED
    except NexusError as exc:
        error_line(str(exc) or type(exc).__name__)
        return int(getattr(exc, "exit_code", EXIT_ERROR))
    except ValidationError as exc:
        error_line(describe_validation_error(exc))
        return EXIT_USAGE
    except BrokenPipeError:
        # stdout closed early (`nexus-backup list ... | head`): not worth a message.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_ERROR
    except OSError as exc:
        if _debug():
            traceback.print_exc()
        error_line(describe_os_error(exc))
        return EXIT_ERROR
    except Exception as exc:
        if _debug():
            traceback.print_exc()
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error_line(f"{detail} (run with NEXUS_DEBUG=1 for the traceback)", kind="internal error")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
