"""The command line of `nexus-backup`: the argparse parser, its argument types (ids, KEY=VALUE,
ports, points in time), and the help text with the exit codes.

A usage error is raised as `UsageError` (one line, exit 2), never printed by argparse. Each
command is bound to its function in `cli.commands` when the parser is built, not when this
module is imported.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from datetime import datetime
from typing import NoReturn

from cli.context import Context, UsageError
from cli.password import ENV_NEW_PASSWORD, ENV_PASSWORD, ENV_TO_PASSWORD
from cli.render import PROG
from core.config import DEFAULT_PORT, ENV_REPOSITORY, ENV_ROOT, ENV_TOKEN, MIN_TOKEN_LENGTH
from core.kinds import BackupStatus, BackupType
from core.query import WHEN_HELP, parse_tag, parse_when
from core.utc import utc


class _Commands:
    """`cli.commands.<name>`, imported when first used for more than naming its command.

    `x.cmd_y` is a function that imports `cli.commands.x` when it runs, so that building the
    parser (for --help, --version, a usage error, or one command) imports no other command's
    modules; any other attribute (an argument helper, a choice list) imports the module.
    """

    def __init__(self, name: str) -> None:
        self._name = f"cli.commands.{name}"

    def __getattr__(self, attr: str) -> object:
        if attr.startswith("cmd_"):
            return _deferred(self._name, attr)
        return getattr(importlib.import_module(self._name), attr)


def _deferred(module: str, attr: str) -> Callable[[Context], int]:
    def command(ctx: Context) -> int:
        func: Callable[[Context], int] = getattr(importlib.import_module(module), attr)
        return func(ctx)

    command.__name__ = command.__qualname__ = attr
    return command


cat = _Commands("cat")
check = _Commands("check")
completion = _Commands("completion")
copy = _Commands("copy")
create = _Commands("create")
delete = _Commands("delete")
delete_project = _Commands("delete_project")
demo = _Commands("demo")
diff = _Commands("diff")
dump = _Commands("dump")
find = _Commands("find")
info = _Commands("info")
key = _Commands("key")
ls = _Commands("ls")
projects = _Commands("projects")
rebuild_index = _Commands("rebuild_index")
rename_project = _Commands("rename_project")
restore = _Commands("restore")
retention = _Commands("retention")
run_due = _Commands("run_due")
schedule = _Commands("schedule")
schedule_flags = _Commands("schedule_flags")
serve = _Commands("serve")
settings = _Commands("settings")
stats = _Commands("stats")
tui = _Commands("tui")
verify = _Commands("verify")
list_ = _Commands("list")


EXIT_CODES_HELP = f"""\
exit codes:
  0    success
  1    error (unknown project or backup, busy, permission denied, disk full, ...)
  2    bad usage or invalid input (unknown option, invalid id, bad --tag, bad path, ...)
  3    completed, but some files were skipped (create) or not restored (restore), or
       the copy after the backup (settings copy-to) failed; the warnings name them
  4    verify found damage (the damaged files are named)
  12   an encrypted project's password is wrong, or none was given
  130  interrupted (Ctrl-C); a running backup is marked failed ("cancelled")

environment:
  {ENV_ROOT}  repository root when --root is not given
                     (default: $XDG_DATA_HOME/nexus-backup or ~/.local/share/nexus-backup)
  {ENV_REPOSITORY}  where the repositories live when --repo is not given
  NEXUS_BACKUP_PASSWORD  an encrypted project's password (see --password-file)
  NEXUS_BACKUP_TO_PASSWORD  an encrypted copy target's password (copy --to-password-file)
  NEXUS_DEBUG=1      print the traceback of an internal error

Every command accepts --json (before or after the command) to print the result as JSON.
"""


#: What a command's own --help ends with: the table is once, in the main --help.
SEE_EXIT_CODES = f"exit codes and environment: see '{PROG} --help'"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{PROG} {version('nexus-backup')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return f"{PROG} (not installed)"


class _VersionAction(argparse._VersionAction):
    """--version, its text looked up only when it is asked for: the lookup reads the installed
    packages' metadata, which every other command would pay for at start-up."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        self.version = _version()
        super().__call__(parser, *args, **kwargs)  # type: ignore[arg-type]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (raised, not printed and exited)."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog[len(PROG) :].strip() if self.prog.startswith(PROG) else ""
        prefix = f"{sub}: " if sub else ""
        if "required" in message or "unrecognized" in message:
            message += f" (see '{self.prog} --help')"
        raise UsageError(prefix + message)


def _project_arg(value: str) -> str:
    from core.ids import check_id

    try:
        return check_id(value, "project id")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _backup_arg(value: str) -> str:
    if value == "latest":
        return value
    from core.ids import check_id

    try:
        return check_id(value, "backup id")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tag_item(value: str) -> tuple[str, str]:
    """A create's `--tag`: KEY=VALUE or a bare KEY, by the engine's rule (`parse_tag_item`)."""
    from core.models import parse_tag_item

    try:
        return parse_tag_item(value)
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


def _since_arg(value: str) -> datetime:
    try:
        return parse_when(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _until_arg(value: str) -> datetime:
    try:
        return parse_when(value, end=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tag_arg(value: str) -> str:
    """A list filter's tag, checked by the query grammar (`core.query.parse_tag`)."""
    try:
        parse_tag(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _time_arg(value: str) -> datetime:
    """An ISO 8601 time (UTC unless it names its offset), for `create --time`."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {value!r} (e.g. 2024-05-01T12:00:00Z)"
        ) from None
    return utc(when)


def _nonempty(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted after the command too: the sub-parsers carry copies whose
    # default is SUPPRESS, so they only override what was given before the command when given.
    common = _Parser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--repo", metavar="URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON"
    )
    for opt, meta in (("--password-file", "F"), ("--password-command", "CMD")):
        common.add_argument(opt, metavar=meta, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    parser = _Parser(
        prog=PROG,
        description="Deduplicating, compressed, crash-safe backups of project directories.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=None,
        help=f"repository root (default: ${ENV_ROOT}, else ~/.local/share/nexus-backup)",
    )
    parser.add_argument(
        "--repo",
        metavar="URL",
        default=None,
        help=f"where the repositories live, when not under the root: a directory or a store "
        f"URL (default: ${ENV_REPOSITORY}, else ROOT/backups)",
    )
    parser.add_argument(
        "--json", action="store_true", default=False, help="print results as JSON (for scripts)"
    )
    parser.add_argument(
        "--password-file",
        metavar="F",
        default=None,
        help=f"an encrypted project's password: the first line of F (default: ${ENV_PASSWORD}, "
        "else --password-command, else asked on the terminal)",
    )
    parser.add_argument(
        "--password-command",
        metavar="CMD",
        default=None,
        help="an encrypted project's password: the first line CMD prints (a secret manager)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str, func: Callable[[Context], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=SEE_EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    types = [t.value for t in BackupType]
    statuses = [s.value for s in BackupStatus]

    p = add("create", "back up a directory into a project", create.cmd_create)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    stats.add_metrics_file(p)
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
    p.add_argument(
        "--type",
        dest="backup_type",
        choices=types,
        default="full",
        help="full: read every file again; incremental: read only what changed since the "
        "latest backup this host made (its recorded parent); snapshot: the state now, no "
        "parent recorded; checkpoint: a named restore point, judged by retention on its own "
        "(default full)",
    )
    p.add_argument(
        "--tag",
        metavar="K=V",
        type=_tag_item,
        action="append",
        default=[],
        help="KEY=VALUE, or a bare KEY (a tag with no value); repeatable",
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
    p.add_argument(
        "--host", metavar="HOST", help="the host recorded as making it (default: this one)"
    )
    p.add_argument("--parent", metavar="ID", type=_backup_arg, help="parent of an incremental")
    p.add_argument(
        "--time",
        dest="created_at",
        metavar="ISO",
        type=_time_arg,
        help="the creation time to record (to import older backups; default: now; UTC unless "
        "an offset is given)",
    )
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="a new project is created encrypted (its password from the usual places, else "
        "typed twice); an existing project keeps what it is",
    )

    p = add("key", "list, add, remove or change the passwords of an encrypted project", key.cmd_key)
    p.add_argument("action", metavar="ACTION", choices=["list", "add", "remove", "passwd"])
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("key_id", metavar="KEY_ID", nargs="?", help="the key to remove")
    p.add_argument(
        "--new-password-file",
        metavar="F",
        help=f"the new password (add, passwd): the first line of F (default: ${ENV_NEW_PASSWORD}"
        ", else typed twice)",
    )

    p = add(
        "restore", "restore a backup (or some paths of it) into a directory", restore.cmd_restore
    )
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

    p = add("list", "list the backups of a project, newest first", list_.cmd_list)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("--type", dest="backup_type", choices=types)
    p.add_argument("--status", choices=statuses)
    p.add_argument("--tag", metavar="K=V", type=_tag_arg, help="KEY=VALUE, or KEY alone")
    p.add_argument("--since", metavar="DATE", type=_since_arg, help=WHEN_HELP)
    p.add_argument("--until", metavar="DATE", type=_until_arg, help=WHEN_HELP)
    p.add_argument("--host", metavar="HOST", help="only backups made on this host")
    p.add_argument(
        "--search", metavar="TEXT", help="words in id, type, status, tags or error message"
    )

    p = add("info", "show everything about one backup", info.cmd_info)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg, help='or "latest"')

    p = add(
        "stats",
        "the history of a project's backups and its totals (without PROJECT: every project's)",
        stats.cmd_stats,
    )
    p.add_argument("project", metavar="PROJECT", type=_project_arg, nargs="?")
    p.add_argument("--since", metavar="DATE", type=_since_arg, help=f"rows from then: {WHEN_HELP}")

    p = add("delete", "delete a backup and reclaim the space only it used", delete.cmd_delete)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg)

    p = add(
        "delete-project",
        "delete a project and all its backups (asks for its name, or --yes)",
        delete_project.cmd_delete_project,
    )
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("--yes", action="store_true", help="do not ask (scripts): delete it")

    p = add(
        "rename-project",
        "give a project a new name, every backup with it (repositories on a local disk)",
        rename_project.cmd_rename_project,
    )
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("new_id", metavar="NEW_NAME", type=_project_arg)

    p = add("policy", "show, set or clear a project's retention policy", retention.cmd_policy)
    p.add_argument("action", metavar="ACTION", choices=["show", "set", "clear"])
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    retention.add_rule_flags(p)
    schedule_flags.add_policy_flags(p)

    p = add(
        "run-due",
        "back up every project whose scheduled run is due (its policy's --schedule)",
        run_due.cmd_run_due,
    )
    run_due.add_arguments(p, _project_arg)
    stats.add_metrics_file(p)  # every project's metrics, after the runs

    p = add(
        "schedule",
        "install or remove the timer that runs run-due; status: every project's schedule",
        schedule.cmd_schedule,
    )
    schedule.add_arguments(p)

    p = add(
        "forget",
        "apply retention rules (given, else the project's policy): remove the backups no rule "
        "keeps, and reclaim",
        retention.cmd_forget,
    )
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    retention.add_rule_flags(p)
    p.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    p.add_argument(
        "--max-unused",
        metavar="SHARE",
        type=retention.max_unused,
        default=0.05,
        help="repack a pack only when more than this share of it is unused (default 5%%)",
    )

    for name, text, fn in (
        ("protect", "protect a backup: no retention rule removes it", retention.cmd_protect),
        ("unprotect", "lift a backup's protection", retention.cmd_unprotect),
    ):
        p = add(name, text, fn)
        p.add_argument("project", metavar="PROJECT", type=_project_arg)
        p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg, help='or "latest"')
    p = add(
        "undelete",
        "bring back a backup retention removed (in its grace period); without an id, list them",
        retention.cmd_undelete,
    )
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg, nargs="?")

    for module in (diff, find, ls, cat, dump):  # comparing and searching backups (issue 17)
        module.register(add, _project_arg, _backup_arg)

    p = add("verify", "check a backup's data (every chunk and hash)", verify.cmd_verify)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("backup_id", metavar="BACKUP_ID", type=_backup_arg, nargs="?")
    p.add_argument("--all", action="store_true", help="verify every completed backup")
    p.add_argument("--quick", action="store_true", help="only check that every chunk exists")
    stats.add_metrics_file(p)

    p = add("copy", "copy backups into another repository (only missing chunks)", copy.cmd_copy)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument(
        "backup_ids",
        metavar="BACKUP_ID",
        type=_backup_arg,
        nargs="*",
        help='the backups to copy (or "latest"; default: every completed one)',
    )
    p.add_argument(
        "--to", required=True, metavar="REPO", help="the target: a directory or a store URL"
    )
    p.add_argument(
        "--to-password-file",
        metavar="F",
        help=f"an encrypted target's password: the first line of F (default: ${ENV_TO_PASSWORD}, "
        "else --to-password-command, else the project's own password); a new target is then "
        "created encrypted under it, as with --encrypt",
    )
    p.add_argument(
        "--to-password-command",
        metavar="CMD",
        help="an encrypted target's password: the first line CMD prints (a new target is "
        "then created encrypted under it)",
    )
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="a new target is created encrypted, under the target's password (a copy of an "
        "encrypted project always is)",
    )

    p = add("settings", "show a project's settings, or set copy-to", settings.cmd_settings)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("key", metavar="KEY", nargs="?", choices=["copy-to"], help="copy-to")
    p.add_argument("value", metavar="VALUE", nargs="?", help="a directory, a store URL, or off")

    p = add("check", "check a whole project: index, packs and every backup", check.cmd_check)
    p.add_argument("project", metavar="PROJECT", type=_project_arg)
    p.add_argument("--read-data", action="store_true", help="re-read and hash every chunk (slower)")

    p = add(
        "rebuild-index",
        "rebuild a project's index from its packs alone",
        rebuild_index.cmd_rebuild_index,
    )
    p.add_argument("project", metavar="PROJECT", type=_project_arg)

    add("projects", "list the projects in the repository", projects.cmd_projects)

    p = add("serve", "run the HTTP API", serve.cmd_serve)
    p.description = (
        f"run the HTTP API on http://HOST:PORT/api/v1 (default 127.0.0.1:{DEFAULT_PORT}); the "
        f"clients send the token as 'Authorization: Bearer TOKEN'. The token comes from "
        f"--token, else --token-file, else ${ENV_TOKEN}; it must be at least "
        f"{MIN_TOKEN_LENGTH} characters. Without one, the API listens on loopback only."
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--token",
        metavar="T",
        help=f"bearer token the clients must send (default: ${ENV_TOKEN}); "
        f"at least {MIN_TOKEN_LENGTH} characters",
    )
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
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="projects the API creates are encrypted (under the password given to the server: "
        f"${ENV_PASSWORD}, --password-file or --password-command, read once at start)",
    )
    p.add_argument(
        "--run-schedules",
        action="store_true",
        help="also run the scheduled backups that are due, every minute (as run-due does)",
    )
    p.add_argument(
        "--metrics-public",
        action="store_true",
        help="answer GET /metrics (Prometheus) without the token (default: the token needed)",
    )

    p = add("completion", "print a shell completion script", completion.cmd_completion)
    p.add_argument("shell", metavar="SHELL", choices=completion.SHELLS, help="bash, zsh or fish")
    p.epilog = f"{completion.INSTALL_HELP}\n\n{SEE_EXIT_CODES}"

    add("tui", "open the terminal user interface (the default)", tui.cmd_tui)
    add("demo", "open the TUI on a temporary repository filled with sample data", demo.cmd_demo)
    return parser
