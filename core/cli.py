"""`nexus-backup`: the command-line program (see docs/CONTRACT.md, "CLI").

    nexus-backup [--root DIR] [--json] COMMAND ...

Human output by default (humanized sizes and times, aligned tables), `--json` for scripts
(only the pydantic models, as JSON, on stdout). Errors are one line on stderr, never a
traceback; the exit code says what happened (see EXIT_CODES_HELP).

This module must stay importable without textual or fastapi: the TUI and the HTTP server are
imported lazily, inside the commands that start them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import humanize
from pydantic import BaseModel, ValidationError

from core.config import ENV_ROOT, resolve_root
from core.errors import Cancelled, NexusError, describe_os_error
from core.memory import limit_malloc_arenas
from core.models import (
    BackupInfo,
    BackupMetadata,
    BackupStatus,
    BackupType,
    CheckResult,
    CreateRequest,
    DeleteResult,
    ListFilter,
    ProjectSummary,
    RebuildResult,
    RestoreRequest,
    RestoreResult,
    VerifyResult,
    check_id,
)
from core.progress_bar import ProgressBar, cells

PROG = "nexus-backup"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_DAMAGED = 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = f"""\
exit codes:
  0    success
  1    error (unknown project or backup, busy, permission denied, disk full, ...)
  2    bad usage or invalid input (unknown option, invalid id, bad --tag, bad path, ...)
  3    completed, but some files were skipped (create) or not restored (restore);
       the warnings name them
  4    verify found damage (the damaged files are named)
  130  interrupted (Ctrl-C); a running backup is marked failed ("cancelled")

environment:
  {ENV_ROOT}  repository root when --root is not given
                     (default: $XDG_DATA_HOME/nexus-backup or ~/.local/share/nexus-backup)
  NEXUS_DEBUG=1      print the traceback of an internal error

Every command accepts --json (before or after the command) to print the result as JSON.
"""

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------------------------


class UsageError(Exception):
    """Bad command-line usage: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (raised, not printed and exited)."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog[len(PROG) :].strip() if self.prog.startswith(PROG) else ""
        prefix = f"{sub}: " if sub else ""
        if "required" in message or "unrecognized" in message:
            message += f" (see '{self.prog} --help')"
        raise UsageError(prefix + message)


def _project_arg(value: str) -> str:
    try:
        return check_id(value, "project id")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _backup_arg(value: str) -> str:
    if value == "latest":
        return value
    try:
        return check_id(value, "backup id")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _key_value(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {value}")
    return value


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    return port


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)(?:\s+ago)?$", re.IGNORECASE)
_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours"}
_UNITS |= {"d": "days", "w": "weeks"}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(text: str, *, end_of_day: bool = False, now: datetime | None = None) -> datetime:
    """A point in time from the command line, always timezone-aware (UTC when naive).

    Accepts an ISO date (``2026-11-29``; with `end_of_day`, the end of that day, so that
    ``--until 2026-11-29`` includes the day), an ISO datetime (``2026-11-29T03:12``,
    ``...Z``, ``...+01:00``), a relative time back from now (``30m``, ``12h``, ``7d``,
    ``2w``), or ``now`` / ``today`` / ``yesterday``.
    """
    now = now or datetime.now(UTC)
    raw = text.strip()
    lowered = raw.lower()
    if lowered == "now":
        return now
    if lowered in ("today", "yesterday"):
        day = now.date() - timedelta(days=1 if lowered == "yesterday" else 0)
        return _day_bound(day, end_of_day)
    match = _RELATIVE.match(raw)
    if match:
        amount = float(match.group(1))
        unit = _UNITS[match.group(2).lower()]
        return now - timedelta(**{unit: amount})
    if _DATE_ONLY.match(raw):
        try:
            return _day_bound(date.fromisoformat(raw), end_of_day)
        except ValueError:
            pass
    else:
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    raise ValueError(
        f"invalid date {text!r}: use an ISO date or datetime (2026-11-29, 2026-11-29T03:00), "
        "or a relative time like 30m, 12h, 7d, 2w"
    )


def _day_bound(day: date, end_of_day: bool) -> datetime:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1, microseconds=-1) if end_of_day else start


def _since_arg(value: str) -> datetime:
    try:
        return parse_when(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _until_arg(value: str) -> datetime:
    try:
        return parse_when(value, end_of_day=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _nonempty(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted after the command too: the sub-parsers carry copies whose
    # default is SUPPRESS, so they only override what was given before the command when given.
    common = _Parser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON"
    )

    parser = _Parser(
        prog=PROG,
        description="Deduplicating, compressed, crash-safe backups of project directories.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=None,
        help=f"repository root (default: ${ENV_ROOT}, else ~/.local/share/nexus-backup)",
    )
    parser.add_argument(
        "--json", action="store_true", default=False, help="print results as JSON (for scripts)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str, func: Callable[[Context], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    types = [t.value for t in BackupType]
    statuses = [s.value for s in BackupStatus]

    p = add("create", "back up a directory into a project", cmd_create)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument(
        "data_dir",
        metavar="DATA_DIR",
        type=_nonempty,
        nargs="?",
        help="default: the directory the project backs up",
    )
    p.add_argument(
        "--data-dir-change",
        action="store_true",
        help="back up DATA_DIR although the project backs up another directory (re-points it)",
    )
    p.add_argument("--type", dest="backup_type", choices=types, default="full")
    p.add_argument(
        "--tag", metavar="K=V", type=_key_value, action="append", default=[], help="repeatable"
    )
    p.add_argument(
        "--extra",
        metavar="K=V",
        type=_key_value,
        action="append",
        default=[],
        help="free-form metadata (string values); repeatable",
    )
    p.add_argument(
        "--exclude", metavar="GLOB", action="append", default=[], type=_nonempty, help="repeatable"
    )
    p.add_argument("--name", metavar="NAME", help="name of a checkpoint")
    p.add_argument("--parent", metavar="ID", type=_backup_arg, help="parent of an incremental")

    p = add("restore", "restore a backup (or some paths of it) into a directory", cmd_restore)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg, help='or "latest"')
    p.add_argument("restore_dir", metavar="RESTORE_DIR", type=_nonempty)
    p.add_argument(
        "--path",
        dest="paths",
        metavar="P",
        action="append",
        default=[],
        type=_nonempty,
        help="path or glob inside the backup; repeatable (default: everything)",
    )
    p.add_argument(
        "--overwrite",
        choices=["always", "if-changed", "never"],
        default="if-changed",
        help="what to do with files that exist in the target (default: if-changed)",
    )
    p.add_argument(
        "--delete",
        dest="delete_extra",
        action="store_true",
        help="delete files in the target that the backup does not hold",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would change")
    p.add_argument(
        "--no-checkpoint",
        dest="checkpoint",
        action="store_false",
        help="do not take a checkpoint of the target before changing it",
    )

    p = add("list", "list the backups of a project, newest first", cmd_list)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("--type", dest="backup_type", choices=types)
    p.add_argument("--status", choices=statuses)
    p.add_argument("--tag", metavar="K=V", type=_nonempty, help="KEY=VALUE, or KEY alone")
    p.add_argument("--since", metavar="DATE", type=_since_arg, help="ISO date/time, or 7d, 12h")
    p.add_argument("--until", metavar="DATE", type=_until_arg, help="ISO date/time, or 7d, 12h")
    p.add_argument("--search", metavar="TEXT", help="substring of id, tags or error message")

    p = add("info", "show everything about one backup", cmd_info)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg, help='or "latest"')

    p = add("delete", "delete a backup and reclaim the space only it used", cmd_delete)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg)

    p = add("verify", "check a backup's data (every chunk and hash)", cmd_verify)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg, nargs="?")
    p.add_argument("--all", action="store_true", help="verify every completed backup")
    p.add_argument("--quick", action="store_true", help="only check that every chunk exists")

    p = add("check", "check a whole project: index, packs and every backup", cmd_check)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("--read-data", action="store_true", help="re-read and hash every chunk (slower)")

    p = add("rebuild-index", "rebuild a project's index from its packs alone", cmd_rebuild_index)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)

    add("projects", "list the projects in the repository", cmd_projects)

    p = add("serve", "run the HTTP API", cmd_serve)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8765)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--token", metavar="T", help="bearer token the clients must send")
    group.add_argument("--token-file", metavar="F", help="read the token from this file")
    p.add_argument(
        "--allow-dir",
        dest="allowed_dirs",
        metavar="DIR",
        action="append",
        default=[],
        help="directory the API may back up or restore into; repeatable",
    )
    p.add_argument(
        "--max-running",
        metavar="N",
        type=_positive_int,
        default=2,
        help="long operations (create, restore, delete) run at once; more wait, queued (default 2)",
    )

    add("tui", "open the terminal user interface (the default)", cmd_tui)
    add("demo", "open the TUI on a temporary repository filled with sample data", cmd_demo)
    return parser


# --------------------------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------------------------


class Context:
    """What every command needs: the root, the output mode, a manager, a progress bar."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json: bool = bool(args.json)
        self.root_arg: str | None = args.root
        self.root: Path = resolve_root(args.root)
        self._manager: Any = None

    @property
    def manager(self) -> Any:
        if self._manager is None:
            from core.manager import BackupManager  # the engine; imported only when needed

            self._manager = BackupManager(self.root)
        return self._manager

    def progress(self) -> ProgressBar:
        """A progress bar on stderr, drawing only on a terminal and never with --json."""
        enabled = None if not self.json else False
        return ProgressBar(sys.stderr, enabled=enabled)

    def emit(self, value: BaseModel | Sequence[BaseModel]) -> None:
        """--json output: the model(s), and nothing else, on stdout."""
        if isinstance(value, BaseModel):
            data: Any = value.model_dump(mode="json")
        else:
            data = [item.model_dump(mode="json") for item in value]
        out(json.dumps(data, indent=2, ensure_ascii=False))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one manager coroutine. Ctrl-C cancels its task (so the core cleans up and marks a
    backup FAILED "cancelled"); asyncio.run then raises KeyboardInterrupt, handled by main()."""
    return asyncio.run(coro)


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _error_line(message: str, *, kind: str = "error") -> None:
    message = clean(" ".join(str(message).split())) or "unknown error"
    sys.stderr.write(f"{PROG}: {kind}: {message}\n")
    sys.stderr.flush()


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
        _error_line(str(exc))
        return EXIT_USAGE
    except (KeyboardInterrupt, Cancelled, asyncio.CancelledError):
        _error_line("interrupted")
        return EXIT_INTERRUPTED
    except NexusError as exc:
        _error_line(str(exc) or type(exc).__name__)
        return int(getattr(exc, "exit_code", EXIT_ERROR))
    except ValidationError as exc:
        _error_line(describe_validation_error(exc))
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
        _error_line(describe_os_error(exc))
        return EXIT_ERROR
    except Exception as exc:
        if _debug():
            traceback.print_exc()
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        _error_line(f"{detail} (run with NEXUS_DEBUG=1 for the traceback)", kind="internal error")
        return EXIT_ERROR


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------


def size(n: float | None) -> str:
    return "-" if n is None else humanize.naturalsize(n, binary=True)


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def ago(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    return humanize.naturaltime(_aware(dt), when=datetime.now(UTC))


def stamp(dt: datetime | None) -> str:
    """``2026-11-29 03:12:03 UTC (5 minutes ago)``."""
    if dt is None:
        return "-"
    utc = _aware(dt).astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S} UTC ({ago(dt)})"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return humanize.precisedelta(timedelta(seconds=seconds), minimum_unit="seconds", format="%d")


def clean(text: object) -> str:
    """A value safe to print on one line: control characters (a newline in a file name) and
    bytes that were not UTF-8 (surrogate escapes) are shown escaped."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Aligned columns, two spaces apart; columns in `right` are right-aligned."""
    cols = len(headers)
    grid = [list(headers)] + [[clean(c) for c in row] for row in rows]
    widths = [max(cells(r[i]) for r in grid) for i in range(cols)]
    lines = []
    for row in grid:
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - cells(cell))
            parts.append(pad + cell if i in right else cell + pad)
        lines.append("  ".join(parts).rstrip())
    return lines


def fmt_tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"


def block(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """``Label       value`` lines; continuation lines of a value are indented under it."""
    width = max(len(label) for label, _ in pairs) + 2
    lines = []
    for label, value in pairs:
        first, *rest = str(value).split("\n") or [""]
        lines.append(f"{label:<{width}}{first}".rstrip())
        lines.extend(" " * width + line for line in rest)
    return lines


def _root_opt(ctx: Context) -> list[str]:
    return ["--root", str(ctx.root)]


def _command(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _remembered_dir(ctx: Context, project: str) -> str:
    found = run(ctx.manager.projects(only=[project]))
    if not found or not found[0].data_dir:
        raise UsageError(f"create: project {project!r} has no directory yet: give DATA_DIR")
    return found[0].data_dir


def cmd_create(ctx: Context) -> int:
    a = ctx.args
    data_dir = a.data_dir or _remembered_dir(ctx, a.project)
    req = CreateRequest(
        project_id=a.project,
        backup_type=BackupType(a.backup_type),
        data_dir=os.path.abspath(data_dir),
        data_dir_change=a.data_dir_change,
        tags=dict(a.tag),
        extra=dict(a.extra),
        excludes=a.exclude,
        parent_backup_id=a.parent,
        name=a.name,
    )
    mgr = ctx.manager
    with ctx.progress() as bar:
        meta: BackupMetadata = run(mgr.create(req, progress=bar))
    code = EXIT_SKIPPED if meta.stats.warnings else EXIT_OK
    if ctx.json:
        ctx.emit(meta)
        return code
    s = meta.stats
    title = f"Created {meta.type.value} backup {meta.id} of project {meta.project_id}"
    if meta.name:
        title += f" (checkpoint {clean(meta.name)!r})"
    lines = [title]
    details = [
        ("Files", f"{meta.files_count} ({size(meta.size_bytes)}) from {clean(req.data_dir)}"),
        (
            "Changes",
            f"{s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged, "
            f"{s.files_removed} removed",
        ),
        (
            "Stored",
            f"{size(s.bytes_stored)} new (read {size(s.bytes_read)}; "
            f"{plural(s.chunks_new, 'new chunk')}, {s.chunks_reused} reused)",
        ),
        (
            "Took",
            f"{duration(s.duration_seconds)} ({size(s.throughput_bytes_per_second)}/s)",
        ),
    ]
    if meta.parent_backup_id:
        details.append(("Parent", meta.parent_backup_id))
    if meta.checksum:
        details.append(("Checksum", meta.checksum))
    lines += ["  " + line for line in block(details)]
    if s.warnings:
        lines.append(f"Warning: {plural(len(s.warnings), 'file')} skipped or changed while read:")
        lines += [f"  {clean(w)}" for w in s.warnings]
    out("\n".join(lines))
    return code


def _resolve_latest(ctx: Context, project: str, backup_id: str) -> str:
    """ "latest" means the newest completed backup (as `info` resolves it)."""
    if backup_id != "latest":
        return backup_id
    info: BackupInfo = run(ctx.manager.info(project, "latest"))
    return info.metadata.id


def cmd_restore(ctx: Context) -> int:
    a = ctx.args
    restore_dir = os.path.abspath(a.restore_dir)
    req = RestoreRequest(
        project_id=a.project,
        backup_id=_resolve_latest(ctx, a.project, a.backup_id),
        restore_dir=restore_dir,
        paths=a.paths,
        overwrite=a.overwrite,
        delete_extra=a.delete_extra,
        dry_run=a.dry_run,
        checkpoint=a.checkpoint,
    )
    mgr = ctx.manager
    with ctx.progress() as bar:
        res: RestoreResult = run(mgr.restore(req, progress=bar))
    code = EXIT_SKIPPED if res.warnings else EXIT_OK
    if ctx.json:
        ctx.emit(res)
        return code
    out("\n".join(_restore_lines(ctx, res)))
    return code


def _restore_lines(ctx: Context, res: RestoreResult) -> list[str]:
    target = clean(res.restore_dir)
    if res.dry_run:
        lines = [f"Dry run: restoring backup {res.backup_id} into {target} would:"]
        changes = [c for c in res.changes if c.action != "unchanged"]
        if not changes:
            lines.append("  change nothing (the target already matches)")
        rows = []
        for c in changes:
            what = clean(c.path) + ("/" if c.kind == "dir" else "")
            if c.kind == "symlink":
                what += " (symlink)"
            detail = (
                size(c.size) if c.kind == "file" and c.action in ("create", "overwrite") else ""
            )
            if c.reason:
                detail = f"{detail}; {c.reason}" if detail else c.reason
            rows.append([c.action, what, detail])
        if rows:
            lines += ["  " + line for line in table(["ACTION", "PATH", "DETAIL"], rows, set())[1:]]
        if res.changes_truncated:
            lines.append("  ... (more changes not listed)")
        # A dry run's counters may stay at zero (nothing was written): count the preview.
        writes = [
            c for c in res.changes if c.kind == "file" and c.action in ("create", "overwrite")
        ]
        to_write = max(res.files_written, len(writes))
        to_delete = max(res.files_deleted, sum(1 for c in res.changes if c.action == "delete"))
        nbytes = max(res.bytes_written, sum(c.size for c in writes))
        more = "at least " if res.changes_truncated else ""
        lines.append(
            f"  in all: {more}{to_write} to write ({size(nbytes)}), {to_delete} to delete, "
            f"{res.files_unchanged} unchanged, {res.files_skipped} skipped"
        )
        lines.append("Nothing was changed (dry run).")
    else:
        lines = [f"Restored backup {res.backup_id} of project {res.project_id} into {target}"]
        details = [
            (
                "Files",
                f"{res.files_written} written, {res.files_unchanged} unchanged, "
                f"{res.files_skipped} skipped, {res.files_deleted} deleted",
            ),
            (
                "Also",
                f"{plural(res.dirs_created, 'directory', 'directories')} created, "
                f"{plural(res.symlinks_created, 'symlink')} created",
            ),
            ("Written", f"{size(res.bytes_written)} in {duration(res.duration_seconds)}"),
            ("Verified", "yes, every written file matches its hash" if res.verified else "no"),
        ]
        if res.checkpoint_id:
            undo = _command(
                PROG,
                *_root_opt(ctx),
                "restore",
                res.project_id,
                res.checkpoint_id,
                res.restore_dir,
                "--overwrite",
                "always",
                "--delete",
                "--no-checkpoint",
            )
            details.append(("Checkpoint", f"{res.checkpoint_id} (the target before this restore)"))
            details.append(("Undo with", undo))
        else:
            details.append(("Checkpoint", "none (the target was empty, or --no-checkpoint)"))
        lines += ["  " + line for line in block(details)]
    if res.warnings:
        lines.append(f"Warning: {plural(len(res.warnings), 'problem')}:")
        lines += [f"  {clean(w)}" for w in res.warnings]
    return lines


def cmd_list(ctx: Context) -> int:
    a = ctx.args
    filters = ListFilter(
        type=BackupType(a.backup_type) if a.backup_type else None,
        status=BackupStatus(a.status) if a.status else None,
        tag=a.tag,
        since=a.since,
        until=a.until,
        text=a.search,
    )
    backups: list[BackupMetadata] = run(ctx.manager.list(a.project, filters))
    if ctx.json:
        ctx.emit(backups)
        return EXIT_OK
    if not backups:
        filtered = any(v is not None for v in filters.model_dump().values())
        out(f"No backups in project {a.project}" + (" match the filters." if filtered else "."))
        return EXIT_OK
    rows = []
    for m in backups:
        status = m.status.value
        if m.status == BackupStatus.FAILED and m.error_message:
            status += f" ({m.error_message})"
            if len(status) > 40:
                status = status[:39] + "…"
        rows.append(
            [
                m.id,
                m.type.value,
                ago(m.created_at),
                size(m.size_bytes),
                str(m.files_count),
                m.parent_backup_id or "-",
                fmt_tags(m.tags),
                status,
            ]
        )
    headers = ["ID", "TYPE", "CREATED", "SIZE", "FILES", "PARENT", "TAGS", "STATUS"]
    out("\n".join(table(headers, rows, right={3, 4})))
    return EXIT_OK


def cmd_info(ctx: Context) -> int:
    a = ctx.args
    info: BackupInfo = run(ctx.manager.info(a.project, a.backup_id))
    if ctx.json:
        ctx.emit(info)
        return EXIT_OK
    out("\n".join(_info_lines(info)))
    return EXIT_OK


def _info_lines(info: BackupInfo) -> list[str]:
    m = info.metadata
    s = m.stats
    extra = json.dumps(m.extra, ensure_ascii=False, sort_keys=True) if m.extra else "-"
    pairs = [
        ("ID", m.id),
        ("Project", m.project_id),
        ("Type", m.type.value + (f" (checkpoint {clean(m.name)!r})" if m.name else "")),
        ("Status", m.status.value),
        ("Created", stamp(m.created_at)),
        ("Completed", stamp(m.completed_at)),
        ("Size", f"{size(m.size_bytes)} ({m.size_bytes} bytes)"),
        ("Files", str(m.files_count)),
        ("Checksum", m.checksum or "-"),
        ("Parent", m.parent_backup_id or "-"),
        ("Error", clean(m.error_message) if m.error_message else "-"),
        ("Tags", clean(fmt_tags(m.tags))),
        ("Extra", clean(extra)),
        (
            "Stats",
            f"read {size(s.bytes_read)}, stored {size(s.bytes_stored)} new; "
            f"chunks {s.chunks_new} new, {s.chunks_reused} reused\n"
            f"files {s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged, "
            f"{s.files_removed} removed; {plural(s.dirs_count, 'dir')}, "
            f"{plural(s.symlinks_count, 'symlink')}\n"
            f"took {duration(s.duration_seconds)} ({size(s.throughput_bytes_per_second)}/s)",
        ),
    ]
    if s.warnings:
        shown = "\n".join(clean(w) for w in s.warnings)
        pairs.append((f"Warnings ({len(s.warnings)})", shown))
    if info.manifest is not None:
        mf = info.manifest
        source = clean(mf.source or "-")
        if mf.hostname:
            source += f" on {clean(mf.hostname)}"
        pairs.append(
            (
                "Manifest",
                f"{source}\n{plural(mf.files, 'file')}, {plural(mf.dirs, 'dir')}, "
                f"{plural(mf.symlinks, 'symlink')}, {size(mf.size_bytes)}, "
                f"{plural(mf.chunks, 'chunk')}",
            )
        )
    else:
        pairs.append(("Manifest", "-"))
    chain = " <- ".join([m.id, *info.parent_chain]) if info.parent_chain else "- (no parent)"
    pairs.append(("Parent chain", chain))
    pairs.append(("Last verify", _verify_summary(info.last_verify)))
    return block(pairs)


def _verify_summary(v: VerifyResult | None) -> str:
    if v is None:
        return "never"
    kind = "quick" if v.quick else "full"
    state = "ok" if v.ok else f"DAMAGED ({plural(len(v.damaged_files), 'damaged file')})"
    return f"{state}, {kind}, {stamp(v.checked_at)}"


def cmd_delete(ctx: Context) -> int:
    a = ctx.args
    backup_id = _resolve_latest(ctx, a.project, a.backup_id)
    with ctx.progress() as bar:
        res: DeleteResult = run(ctx.manager.delete(a.project, backup_id, progress=bar))
    code = EXIT_OK if res.reclaim_refused is None else EXIT_ERROR
    if ctx.json:
        ctx.emit(res)
        return code
    if res.reclaim_refused is not None:
        out(f"Deleted backup {res.backup_id} of project {res.project_id}")
        _error_line(f"space not reclaimed: {res.reclaim_refused}")
        return code
    out(
        f"Deleted backup {res.backup_id} of project {res.project_id}: reclaimed "
        f"{size(res.bytes_reclaimed)} ({plural(res.packs_deleted, 'pack')} deleted, "
        f"{res.packs_rewritten} rewritten)"
    )
    return code


def cmd_verify(ctx: Context) -> int:
    a = ctx.args
    if a.all and a.backup_id:
        raise UsageError("verify: give either BACKUP_ID or --all, not both")
    if not a.all and not a.backup_id:
        raise UsageError('verify: give a BACKUP_ID (or "latest"), or --all')
    mgr = ctx.manager

    async def verify_all() -> list[VerifyResult]:
        backups = await mgr.list(a.project, None)
        results = []
        for m in reversed(backups):  # oldest first
            if m.status == BackupStatus.COMPLETED:
                results.append(await mgr.verify(a.project, m.id, quick=a.quick, progress=bar))
        for backup_id in await mgr.damaged_metadata(a.project):
            results.append(
                VerifyResult(
                    project_id=a.project,
                    backup_id=backup_id,
                    quick=a.quick,
                    ok=False,
                    checked_at=datetime.now(UTC),
                    checksum_ok=False,
                    errors=["metadata.json is missing or damaged"],
                )
            )
        return results

    with ctx.progress() as bar:
        if a.all:
            results = run(verify_all())
        else:
            backup_id = _resolve_latest(ctx, a.project, a.backup_id)
            results = [run(mgr.verify(a.project, backup_id, quick=a.quick, progress=bar))]
    damaged = any(not r.ok for r in results)
    code = EXIT_DAMAGED if damaged else EXIT_OK
    if ctx.json:
        ctx.emit(results if a.all else results[0])
        return code
    if a.all and not results:
        out(f"No completed backups to verify in project {a.project}.")
        return code
    lines: list[str] = []
    for r in results:
        lines += _verify_lines(r)
    if a.all:
        bad = sum(1 for r in results if not r.ok)
        lines.append(
            f"{plural(len(results), 'backup')} verified: " + (f"{bad} DAMAGED" if bad else "all ok")
        )
    out("\n".join(lines))
    return code


def _verify_lines(r: VerifyResult) -> list[str]:
    kind = "quick check, chunks present" if r.quick else "full check"
    counts = f"{plural(r.files_checked, 'file')}, {plural(r.chunks_checked, 'chunk')}"
    if not r.quick:
        counts += f", {size(r.bytes_checked)}"
    counts += f" in {duration(r.duration_seconds)}"
    if r.ok:
        return [f"Backup {r.backup_id}: OK ({kind}: {counts})"]
    lines = [f"Backup {r.backup_id}: DAMAGED ({kind}: {counts})"]
    if not r.checksum_ok:
        lines.append("  manifest checksum does not match")
    if r.damaged_files:
        lines.append(f"  {plural(len(r.damaged_files), 'damaged file')}:")
        lines += [f"    {clean(d.path)}: {clean(d.reason)}" for d in r.damaged_files]
    lines += [f"  error: {clean(e)}" for e in r.errors]
    return lines


def cmd_check(ctx: Context) -> int:
    a = ctx.args
    with ctx.progress() as bar:
        res: CheckResult = run(ctx.manager.check(a.project, read_data=a.read_data, progress=bar))
    code = EXIT_OK if res.ok else EXIT_DAMAGED
    if ctx.json:
        ctx.emit(res)
        return code
    kind = "chunks re-read and hashed" if res.read_data else "chunks present"
    lines = [
        f"Project {res.project_id}: {'OK' if res.ok else 'DAMAGED'} "
        f"({plural(res.packs_checked, 'pack')}, {plural(len(res.backups), 'backup')}; {kind}; "
        f"{duration(res.duration_seconds)})"
    ]
    lines += [f"  error: {clean(e)}" for e in res.errors]
    lines += [f"  warning: {clean(w)}" for w in res.warnings]
    for r in res.backups:
        if not r.ok:
            lines += _verify_lines(r)
    out("\n".join(lines))
    return code


def cmd_rebuild_index(ctx: Context) -> int:
    res: RebuildResult = run(ctx.manager.rebuild_index(ctx.args.project))
    if ctx.json:
        ctx.emit(res)
        return EXIT_DAMAGED if res.damaged_packs else EXIT_OK
    out(
        f"Index of {res.project_id} rebuilt from {plural(res.packs_read, 'pack')}: "
        f"{plural(res.chunks_indexed, 'chunk')} indexed"
    )
    for note in res.notes:
        out(f"  {clean(note)}")
    if res.quarantined:
        out(
            f"  {plural(len(res.quarantined), 'damaged object')} moved to quarantine/ (kept, "
            "not deleted): run check"
        )
    return EXIT_DAMAGED if res.damaged_packs else EXIT_OK


def cmd_projects(ctx: Context) -> int:
    projects: list[ProjectSummary] = run(ctx.manager.projects())
    if ctx.json:
        ctx.emit(projects)
        return EXIT_OK
    if not projects:
        out(f"No projects in {clean(ctx.root)} yet (create one with: {PROG} create PROJECT DIR).")
        return EXIT_OK
    rows = [
        [
            p.project_id,
            str(p.backups),
            ago(p.last_backup_at),
            p.last_status.value if p.last_status else "-",
            size(p.stored_bytes),
            p.data_dir or "-",
        ]
        for p in projects
    ]
    headers = ["PROJECT", "BACKUPS", "LAST BACKUP", "STATUS", "STORED", "DATA DIR"]
    out("\n".join(table(headers, rows, right={1, 4})))
    return EXIT_OK


def _entry_point(module: str, name: str, what: str) -> Callable[..., Any]:
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


def _exit_code(value: object) -> int:
    if value is None:
        return EXIT_OK
    if isinstance(value, bool):
        return EXIT_OK if value else EXIT_ERROR
    return value if isinstance(value, int) else EXIT_ERROR


def cmd_serve(ctx: Context) -> int:
    a = ctx.args
    token = a.token
    if a.token_file:
        try:
            token = Path(a.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise NexusError(describe_os_error(exc, "cannot read --token-file")) from None
        if not token:
            raise UsageError(f"--token-file {a.token_file} is empty")
    allowed = [Path(d).expanduser().absolute() for d in a.allowed_dirs]
    serve = _entry_point("api.server", "serve", "the HTTP API")
    return _exit_code(
        serve(
            ctx.root,
            host=a.host,
            port=a.port,
            token=token,
            allowed_dirs=allowed,
            max_running=a.max_running,
        )
    )


def cmd_tui(ctx: Context) -> int:
    run_tui = _entry_point("tui.app", "run", "the TUI")
    return _exit_code(run_tui(ctx.root, demo=False))


def cmd_demo(ctx: Context) -> int:
    import tempfile

    run_tui = _entry_point("tui.app", "run", "the TUI")
    # Never fill the user's repository with sample data: the demo gets a root of its own.
    with tempfile.TemporaryDirectory(prefix="nexus-backup-demo-") as tmp:
        return _exit_code(run_tui(Path(tmp), demo=True))


if __name__ == "__main__":
    sys.exit(main())
