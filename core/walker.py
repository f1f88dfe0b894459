"""Walking the directory to back up: sorted, never following symlinks, honouring excludes.

The walk is depth-first with each directory's entries sorted by their name bytes, which is
the manifest's order; excludes come from the request (glob patterns) and from a
`.nexusignore` file at the top of the data directory (gitignore syntax, via pathspec).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pathspec

IGNORE_FILE = ".nexusignore"


@dataclass(slots=True)
class WalkItem:
    rel: bytes  # b"/"-separated path relative to the top
    abs: bytes
    kind: str  # "f", "d", "l"
    st: os.stat_result


def load_excludes(top: bytes, patterns: list[str]) -> pathspec.PathSpec | None:
    lines = list(patterns)
    ignore = os.path.join(top, IGNORE_FILE.encode())
    try:
        with open(ignore, encoding="utf-8", errors="surrogateescape") as f:
            lines.extend(f.read().splitlines())
    except (FileNotFoundError, NotADirectoryError):
        pass
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


def walk(
    top: bytes,
    *,
    excludes: pathspec.PathSpec | None = None,
    skip: set[tuple[int, int]] | None = None,
    warn: Callable[[str], None] = lambda _msg: None,
    check: Callable[[], None] = lambda: None,
) -> Iterator[WalkItem]:
    """Yield every directory, regular file and symlink below `top` (not `top` itself).

    `skip` holds (st_dev, st_ino) of directories never to enter (the repository itself when
    it lies inside the data directory). Unreadable directories and special files are
    reported through `warn` and left out of the walk's children.
    """
    skip = skip or set()

    def visit(dir_abs: bytes, dir_rel: bytes) -> Iterator[WalkItem]:
        check()
        try:
            with os.scandir(dir_abs) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not dir_rel:
                raise  # the data directory itself: the backup cannot be made
            where = dir_rel.decode("utf-8", "backslashreplace")
            warn(f"{where}: cannot read directory: {exc.strerror or exc}")
            return
        for entry in entries:
            rel = dir_rel + b"/" + entry.name if dir_rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                warn(f"{_show(rel)}: cannot stat: {exc.strerror or exc}")
                continue
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                kind = "d"
            elif stat.S_ISREG(mode):
                kind = "f"
            elif stat.S_ISLNK(mode):
                kind = "l"
            else:
                warn(f"{_show(rel)}: skipped special file ({_special(mode)})")
                continue
            if excludes is not None:
                text = rel.decode("utf-8", "surrogateescape")
                if excludes.match_file(text + "/" if kind == "d" else text):
                    continue
            if kind == "d" and (st.st_dev, st.st_ino) in skip:
                continue
            yield WalkItem(rel, entry.path, kind, st)
            if kind == "d":
                yield from visit(entry.path, rel)

    yield from visit(top, b"")


def _show(rel: bytes) -> str:
    return rel.decode("utf-8", "backslashreplace")


def _special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "unknown type"
