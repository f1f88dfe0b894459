"""Starting the other faces (the TUI, the HTTP API) from the CLI.

They are imported only by the command that starts them, so that the CLI's other commands
never import textual or fastapi, and a face that is missing is one clear error line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli.context import EXIT_ERROR, EXIT_OK
from core.errors import NexusError


def entry_point(module: str, name: str, what: str) -> Callable[..., Any]:
    """Import `module.name` lazily; a missing one is one clear error line (exit 1)."""
    import importlib

    try:
        mod = importlib.import_module(module)
        func = getattr(mod, name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing and (module == missing or module.startswith(missing + ".")):
            raise NexusError(f"{what} is not available ({module} is not installed)") from None
        raise NexusError(f"{what} is not available: cannot import {module}: {exc}") from None
    except AttributeError:
        raise NexusError(f"{what} is not available ({module}.{name} is missing)") from None
    return func


def exit_code(value: object) -> int:
    """The exit code of a face's entry point: None and True are success, an int is itself."""
    if value is None:
        return EXIT_OK
    if isinstance(value, bool):
        return EXIT_OK if value else EXIT_ERROR
    return value if isinstance(value, int) else EXIT_ERROR
