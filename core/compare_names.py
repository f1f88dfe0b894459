"""What diff, find and ls share apart from their models (core/compare.py): the limits, the
id of the live side, and a stored name as text and back. Without pydantic, so that the
engine imports it with every command and the models only with the commands that compare."""

from __future__ import annotations

import base64

#: Changes a diff returns by default, and paths a find (the totals always count them all).
DIFF_LIMIT = 100_000
FIND_LIMIT = 1000

#: The backup id that stands for the data directory as it is now.
LIVE = "live"


def text_of(path: bytes) -> str:
    """A stored name as text that any JSON encoder takes: bytes that are not UTF-8 read
    \\xNN (the one policy, core.display.fs_text); `path_b64` then holds the exact bytes."""
    return path.decode("utf-8", "backslashreplace")


def b64_of(path: bytes) -> str | None:
    """The name's bytes in base64 when it is not UTF-8 (else None: `path` says it all)."""
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(path).decode("ascii")
    return None


def raw_of(path: str, path_b64: str | None) -> bytes:
    """The exact bytes of a name given as (`path`, `path_b64`)."""
    return base64.b64decode(path_b64) if path_b64 is not None else path.encode("utf-8")
