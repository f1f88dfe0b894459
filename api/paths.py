"""Which server paths a client may name: only those under the directories allowed at start.

A path is judged by what it really is on disk (`os.path.realpath`), so `..` segments and
symlinks leading outside are caught; what the core then gets is that resolved path, not the
client's spelling. With no allowed directory every path is refused: the server never guesses
a default such as its working directory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from api.errors import ApiError

#: The longest name of one directory entry (Linux's, every filesystem's there): a longer
#: component is refused as input, never tried (the filesystem's ENAMETOOLONG).
NAME_MAX = 255


class PathPolicy:
    """The allowed directories, resolved once at start."""

    def __init__(self, allowed_dirs: Iterable[str | os.PathLike[str]]) -> None:
        self.roots: tuple[str, ...] = tuple(
            dict.fromkeys(os.path.realpath(os.fspath(d)) for d in allowed_dirs)
        )

    def resolve(self, raw: str, field: str) -> Path:
        """The real path of `raw` if it lies under (or is) an allowed directory, else a 403
        (or a 422 for a value that is not an absolute path at all) naming `field`."""
        loc = ["body", field]
        if "\x00" in raw:
            raise ApiError(422, f"{field} contains a NUL character", type="invalid_path", loc=loc)
        if not os.path.isabs(raw):
            raise ApiError(
                422, f"{field} must be an absolute path, got {raw!r}", type="invalid_path", loc=loc
            )
        if any(len(part.encode("utf-8", "surrogatepass")) > NAME_MAX for part in raw.split("/")):
            raise ApiError(
                422,
                f"{field} has a name longer than {NAME_MAX} bytes, which no directory can hold",
                type="invalid_path",
                loc=loc,
            )
        if not self.roots:
            raise ApiError(
                403,
                f"{field} refused: the server allows no directory (start it with --allow-dir DIR)",
                type="forbidden_path",
                loc=loc,
            )
        try:
            real = os.path.realpath(raw)
        except OSError:  # a component changed while it was resolved: judged as outside
            raise ApiError(
                403,
                f"{field} refused: {raw!r} changed while it was checked",
                type="forbidden_path",
                loc=loc,
            ) from None
        if not any(
            real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots
        ):
            raise ApiError(
                403,
                f"{field} refused: {raw!r} is not under a directory this server allows",
                type="forbidden_path",
                loc=loc,
            )
        return Path(real)
