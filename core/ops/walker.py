"""Walking the directory to back up: sorted, never following symlinks, honouring excludes.

The walk is depth-first with each directory's entries sorted by their name bytes, which is
the manifest's order; excludes come from the request (glob patterns) and from a
`.nexusignore` file at the top of the data directory (gitignore syntax, via pathspec).

Every entry costs one `lstat` (the DirEntry's); the rest is kept to a few operations per
entry, since a tree of 100,000s of small files is walked in Python: each directory is
listed, stat'ed and classified in one tight loop, and the depth-first order comes from an
explicit stack rather than nested generators. Without exclude patterns nothing is matched;
with them, patterns that only exclude are matched with one combined regex per entry.

Each directory is opened relative to its parent's descriptor, never by its path, so that
nothing outside the tree is listed whatever is swapped for a symlink meanwhile (and the
kernel resolves one name, not a whole path). Extended attributes (`read_xattrs`) are read
by the backup for the entries it reads, through their descriptors where it has them.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING

from core.display import fs_text
from core.ops.confine import open_dir_at

if TYPE_CHECKING:
    import pathspec

IGNORE_FILE = ".nexusignore"


def _pathconf(name: str, default: int) -> int:
    try:
        return os.pathconf("/", name)
    except (OSError, ValueError, AttributeError):
        return default


_KIND = {stat.S_IFDIR: "d", stat.S_IFREG: "f", stat.S_IFLNK: "l"}
_FIRST = itemgetter(0)
_FS_ENCODING = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
_PATH_MAX = _pathconf("PC_PATH_MAX", 4096)  # bytes of a path, with its final NUL
_NAME_MAX = _pathconf("PC_NAME_MAX", 255)
_TOP = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_SUBDIR = _TOP | os.O_NOFOLLOW
_GROUP = re.compile(r"(?<!\\)\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


@dataclass(slots=True)
class WalkItem:
    rel: bytes  # b"/"-separated path relative to the top
    abs: bytes
    kind: str  # "f", "d", "l"
    st: os.stat_result


class Excludes:
    """Compiled exclude patterns (gitignore semantics): `excluded(text, is_dir)`.

    When no pattern re-includes (`!pattern`), a path is excluded as soon as any pattern
    matches it, so the patterns' regexes are joined into one and matched with a single call;
    otherwise pathspec decides (it weighs negations and directory matches).
    """

    def __init__(self, spec: pathspec.PathSpec) -> None:
        self.spec = spec
        self._match = self._combined(spec)

    @staticmethod
    def _combined(spec: pathspec.PathSpec) -> Callable[[str], object] | None:
        try:
            patterns = [p for p in spec.patterns if p.include is not None]
            if not patterns or any(p.include is not True for p in patterns):
                return None
            regexes = [p.regex for p in patterns]  # type: ignore[attr-defined]
            flags = {r.flags for r in regexes}
            if len(flags) != 1 or any(not isinstance(r.pattern, str) for r in regexes):
                return None
            joined = "|".join(f"(?:{_GROUP.sub('(?:', r.pattern)})" for r in regexes)
            return re.compile(joined, flags.pop()).match
        except (AttributeError, TypeError, re.error):
            return None  # a pathspec whose internals differ: let it match by itself

    def excluded(self, text: str, is_dir: bool) -> bool:
        path = text + "/" if is_dir else text
        if self._match is not None:
            return self._match(path) is not None
        return self.spec.match_file(path)


def exclude_lines(
    top: bytes,
    patterns: list[str],
    *,
    use_ignore_file: bool = True,
    top_fd: int | None = None,
    follow_link: bool = False,
    warn: Callable[[str], None] = lambda _msg: None,
) -> list[str]:
    """The effective gitignore lines of a backup: the request's patterns, then the data
    directory's `.nexusignore` (unless `use_ignore_file` is false), blanks and comments left
    out. They are recorded in the manifest, so that a restore can tell excluded paths: one
    that is not UTF-8 text cannot be, and is left out with a warning (the backup then holds
    more, never less)."""
    lines = list(patterns)
    if use_ignore_file:
        lines.extend(_ignore_file_lines(top, top_fd, follow_link))
    kept = []
    for ln in lines:
        if not ln.strip() or ln.startswith("#"):
            continue
        try:
            ln.encode("utf-8")
        except UnicodeEncodeError:
            shown = ln.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            warn(f"exclude pattern {shown!r} is not UTF-8 text: not applied")
            continue
        kept.append(ln)
    return kept


def _ignore_file_lines(top: bytes, top_fd: int | None, follow_link: bool) -> list[str]:
    """The `.nexusignore` lines (none when it is not a regular file: a fifo would block).
    Through `top_fd` when given, following a symlink only with `follow_link`: its lines end
    up in the manifest, so a link there must not pull in a file from outside a confinement."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        if top_fd is None:
            fd = os.open(os.path.join(top, IGNORE_FILE.encode()), flags)
        else:
            nofollow = 0 if follow_link else os.O_NOFOLLOW
            fd = os.open(IGNORE_FILE, flags | nofollow, dir_fd=top_fd)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return []  # a symlink, in a confined backup: not read
        raise
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:  # a directory, a fifo: no lines
        os.close(fd)
        return []
    with open(fd, encoding="utf-8", errors="surrogateescape") as f:
        return f.read().splitlines()


def compile_excludes(lines: list[str]) -> Excludes | None:
    """The matcher of gitignore `lines`, or None when there are none."""
    if not lines:
        return None
    import pathspec  # only when there are patterns (its import is a sizeable part of a run)

    return Excludes(pathspec.GitIgnoreSpec.from_lines(lines))


def load_excludes(
    top: bytes, patterns: list[str], *, use_ignore_file: bool = True, top_fd: int | None = None
) -> Excludes | None:
    """`compile_excludes(exclude_lines(...))`."""
    lines = exclude_lines(top, patterns, use_ignore_file=use_ignore_file, top_fd=top_fd)
    return compile_excludes(lines)


def backs_up(top_len: int, rel: bytes, mode: int) -> bool:
    """Whether a backup of a directory whose path is `top_len` bytes long holds the entry
    `rel` of this mode: a directory, regular file or symlink (special files are skipped)
    whose whole path fits the system's limit. The one rule the walk applies, also asked by a
    restore about what its checkpoint of the target will hold."""
    return _KIND.get(mode & 0o170000) is not None and top_len + 1 + len(rel) < _PATH_MAX


Entry = tuple[bytes, str, os.stat_result]  # (rel, kind, lstat)
#: How the walk reports an entry it leaves out (or a directory it cannot list): its path and
#: a warning line.
Note = Callable[[bytes, str], None]


def _noting(warn: Callable[[str], None], left_out: Callable[[bytes], None] | None) -> Note:
    def note(rel: bytes, message: str) -> None:
        if left_out is not None:
            left_out(rel)
        warn(message)

    return note


def list_dir(
    top: bytes,
    dir_rel: bytes,
    *,
    excludes: Excludes | None = None,
    skip: set[tuple[int, int]] | frozenset = frozenset(),
    warn: Callable[[str], None] = lambda _msg: None,
    left_out: Callable[[bytes], None] | None = None,
) -> list[Entry]:
    """One directory's entries, sorted by name, each with its lstat and kind; special files,
    entries that cannot be stat'ed, excluded ones and `skip` directories left out (the first
    two with a warning, and their paths to `left_out`). Raises OSError only when `dir_rel`
    is the top itself."""
    note = _noting(warn, left_out)
    try:
        # Listed through a descriptor: each entry's lstat is then an fstatat relative to it
        # (no walk of the whole path per file), and a directory swapped for a symlink since
        # it was stat'ed is refused (O_NOFOLLOW) rather than followed.
        fd = os.open(top + b"/" + dir_rel, _SUBDIR) if dir_rel else os.open(top, _TOP)
    except OSError as exc:
        if not dir_rel:
            raise  # the data directory itself: the backup cannot be made
        note(dir_rel, f"{_show(dir_rel)}: cannot read directory: {exc.strerror or exc}")
        return []
    try:
        return _list_fd(fd, len(top), dir_rel, excludes, skip, note)
    except OSError as exc:
        if not dir_rel:
            raise
        note(dir_rel, f"{_show(dir_rel)}: cannot read directory: {exc.strerror or exc}")
        return []
    finally:
        os.close(fd)


def _list_fd(
    fd: int,
    top_len: int,
    dir_rel: bytes,
    excludes: Excludes | None,
    skip: set[tuple[int, int]] | frozenset,
    note: Note,
) -> list[Entry]:
    enc, errors = _FS_ENCODING
    with os.scandir(fd) as it:  # names come as str: sorted as their bytes (os.fsencode)
        entries = sorted([(e.name.encode(enc, errors), e) for e in it], key=_FIRST)
    prefix = dir_rel + b"/" if dir_rel else b""
    # The entries are stat'ed relative to the directory, which works at any depth; but an
    # entry whose whole path is too long for the system could be neither read nor restored:
    # it is left out, as a stat by its path would have (names are at most NAME_MAX long).
    room = _PATH_MAX - (top_len + 1 + len(prefix))
    deep = room <= _NAME_MAX
    kinds = _KIND
    out: list[Entry] = []
    append = out.append
    for name, entry in entries:
        rel = prefix + name
        if deep and len(name) >= room:
            note(rel, f"{_show(rel)}: cannot stat: {os.strerror(errno.ENAMETOOLONG)}")
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            note(rel, f"{_show(rel)}: cannot stat: {exc.strerror or exc}")
            continue
        kind = kinds.get(st.st_mode & 0o170000)
        if kind is None:
            note(rel, f"{_show(rel)}: skipped special file ({_special(st.st_mode)})")
            continue
        if kind == "d" and (st.st_dev, st.st_ino) in skip:
            continue
        if excludes is not None and excludes.excluded(
            rel.decode("utf-8", "surrogateescape"), kind == "d"
        ):
            continue
        append((rel, kind, st))
    return out


def walk_entries(
    top: bytes,
    *,
    top_fd: int | None = None,
    excludes: Excludes | None = None,
    skip: set[tuple[int, int]] | None = None,
    warn: Callable[[str], None] = lambda _msg: None,
    check: Callable[[], None] = lambda: None,
    left_out: Callable[[bytes], None] | None = None,
) -> Iterator[Entry]:
    """Every directory, regular file and symlink below `top` (not `top` itself) as
    (rel, kind, lstat), depth-first, each directory's entries sorted by name bytes.

    Each directory is opened relative to its parent's descriptor with O_NOFOLLOW, never by
    its path: a directory swapped for a symlink during the walk is refused, not followed,
    and with `top_fd` (the data directory opened beneath a trusted one, see core.ops.confine)
    nothing outside it is ever listed, whatever happens to its path meanwhile; `top` then
    only names it in messages. `skip` holds (st_dev, st_ino) of directories never to enter
    (the repository itself when it lies inside the data directory). Unreadable directories
    and special files are reported through `warn` and left out of the walk's children;
    `left_out` is told their paths (a restore's `--delete` leaves them alone).
    """
    note = _noting(warn, left_out)
    skip = skip or frozenset()
    top_len = len(top)
    check()
    # fds[k]: the descriptor of the directory at depth k of the stack, for the first
    # HELD_LEVELS levels (a deeper one is reopened from the deepest held, component by
    # component): the walk holds a bounded number of descriptors, whatever the depth.
    fds = [os.dup(top_fd) if top_fd is not None else os.open(top, _TOP)]
    try:
        stack = [iter(_list_fd(fds[0], top_len, b"", excludes, skip, note))]
        while stack:
            for item in stack[-1]:
                yield item
                if item[1] == "d":
                    check()
                    stack.append(
                        iter(_list_child(fds, len(stack), item[0], top_len, excludes, skip, note))
                    )
                    break
            else:
                stack.pop()
                if len(fds) > len(stack):
                    os.close(fds.pop())
    finally:
        for fd in fds:
            os.close(fd)


HELD_LEVELS = 64


def _list_child(
    fds: list[int],
    depth: int,
    rel: bytes,
    top_len: int,
    excludes: Excludes | None,
    skip: set[tuple[int, int]] | frozenset,
    note: Note,
) -> list[Entry]:
    """The entries of the directory `rel` at `depth`, opened from its parent's descriptor
    (or the deepest one held); its own descriptor joins `fds` while there is room."""
    try:
        if len(fds) == depth:  # the parent's descriptor is held
            fd = os.open(rel.rpartition(b"/")[2], _SUBDIR, dir_fd=fds[-1])
        else:
            fd = open_dir_at(fds[-1], b"/".join(rel.split(b"/")[len(fds) - 1 :]))
    except OSError as exc:
        note(rel, f"{_show(rel)}: cannot read directory: {exc.strerror or exc}")
        return []
    try:
        entries = _list_fd(fd, top_len, rel, excludes, skip, note)
    except OSError as exc:
        os.close(fd)
        note(rel, f"{_show(rel)}: cannot read directory: {exc.strerror or exc}")
        return []
    if depth < HELD_LEVELS:
        fds.append(fd)
    else:
        os.close(fd)
    return entries


def walk(
    top: bytes,
    *,
    top_fd: int | None = None,
    excludes: Excludes | None = None,
    skip: set[tuple[int, int]] | None = None,
    warn: Callable[[str], None] = lambda _msg: None,
    check: Callable[[], None] = lambda: None,
) -> Iterator[WalkItem]:
    """`walk_entries` as WalkItems (with the absolute path)."""
    for rel, kind, st in walk_entries(
        top, top_fd=top_fd, excludes=excludes, skip=skip, warn=warn, check=check
    ):
        yield WalkItem(rel, os.path.join(top, rel), kind, st)


_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})


def read_xattrs(target: int | bytes) -> dict[bytes, bytes] | None:
    """The extended attributes (POSIX ACLs among them) of an open file (`target` a
    descriptor) or of a path, not following a symlink; None when there are none or the
    filesystem has none. One listxattr, and a getxattr per name only when there are names.
    Raises OSError (EACCES...) for the caller to warn about."""
    fd = isinstance(target, int)
    try:
        names = os.listxattr(target) if fd else os.listxattr(target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return None
        raise
    if not names:
        return None
    out: dict[bytes, bytes] = {}
    for name in names:
        try:
            if fd:
                value = os.getxattr(target, name)
            else:
                value = os.getxattr(target, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _NO_XATTRS or exc.errno == errno.ENODATA:
                continue  # removed since it was listed
            raise
        out[os.fsencode(name)] = value
    return out or None


_show = fs_text  # a path in a message: the one decode policy (core.display)


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
