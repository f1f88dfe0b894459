"""`schedule install|status|remove` (issue 14): the system's timer that calls `run-due` every
few minutes (each project's policy decides what is due), and every project's schedule.

`install` writes a systemd service and timer (`--user`: the user's manager, the default;
`--system`: /etc/systemd/system) and enables the timer with systemctl, or, where systemd is
not running, prints the cron line (`--crontab` installs it into the user's crontab).
`--dry-run` prints what would be written. `--unit-dir DIR` (or $NEXUS_BACKUP_UNIT_DIR)
writes the units there and never calls systemctl (tests, images built offline).

Every value put into a unit or the cron line (this program's path, the root, the repository,
the password file, every project's copy-to target) is data, never a directive: one holding a
control character is refused before anything is written (a newline or CR would end the line
there and start a directive or a cron line of its own), the rest is quoted as systemd
(systemd.syntax(7), `%` specifiers, `$` in a command line) and cron (`%`, crontab(5); the
shell) read it. A unit is written to a temp file of its own, then renamed into place
(invariant I15, docs/design.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cli.context import EXIT_ERROR, EXIT_OK, Context, UsageError, root_opt, run
from cli.render import clean, error_line, out, table
from core.display import not_data

if TYPE_CHECKING:  # the parser imports this module for its flags: not pydantic's models
    from core.models import ProjectSummary

ENV_UNIT_DIR = "NEXUS_BACKUP_UNIT_DIR"
NAME = "nexus-backup-run-due"
#: How often the timer calls run-due (systemd calendar): the finest a schedule can be kept.
EVERY = "*:0/5"
CRON_EVERY = "*/5 * * * *"
CRON_MARK = "# nexus-backup run-due"
#: The first line of every unit install writes, then the options naming the repository whose
#: run-due it runs: what tells our unit from one of the same name the user wrote (never
#: replaced nor removed), and one root's from another's (one unit directory, one name).
UNIT_MARK = "# Written by nexus-backup schedule install, for: "
#: What units written before UNIT_MARK existed begin their [Unit] section with.
_LEGACY_DESCRIPTIONS = (
    "Description=nexus-backup: run the scheduled backups that are due",
    "Description=nexus-backup: check the scheduled backups every five minutes",
)


@dataclass(frozen=True)
class Units:
    service: str
    timer: str


def plain(value: str, what: str) -> str:
    """`value`, or UsageError when it holds a character that is not data
    (`display.not_data`): a newline (systemd also ends a line at CR) in a unit or a cron
    line would start a directive or a line of its own, so such a value is refused, never
    escaped."""
    bad = not_data(value)
    if bad is not None:
        raise UsageError(
            f"{what} {value!r} holds a control character ({bad!r}): it cannot go into a "
            "systemd unit or a crontab line; nothing was written"
        )
    return value


def _word(text: str) -> str:
    """One word of a unit setting as systemd splits it (systemd.syntax(7)): bare when
    nothing in it is special, else double-quoted with `\\` and `"` escaped."""
    if text and all(c.isalnum() or c in "/._-=:+,@" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _exec_word(arg: str) -> str:
    """One argument of ExecStart=: `%` (a specifier) and `$` (a variable) doubled."""
    return _word(plain(arg, "run-due's argument").replace("%", "%%").replace("$", "$$"))


def _path_word(path: str) -> str:
    """One path of ReadWritePaths=, ignored when missing (`-`): `%` doubled; `$` is no
    variable there, so it is kept as it is."""
    return _word("-" + plain(path, "the writable path").replace("%", "%%"))


def _cron_word(arg: str) -> str:
    """One shell word of the cron line: shell-quoted, every `%` written `\\%` outside the
    quotes (cron makes a bare `%` a newline and sends the rest to standard input,
    crontab(5)), so no backslash of the value ever stands right before one."""
    parts = plain(arg, "run-due's argument").split("%")
    return "\\%".join(shlex.quote(part) if part else "" for part in parts) or "''"


def program() -> list[str]:
    """The command that runs this very nexus-backup: its console script beside the
    interpreter (a venv's bin/), else the interpreter running the cli package."""
    script = Path(sys.executable).parent / "nexus-backup"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("nexus-backup")
    return [found] if found else [sys.executable, "-m", "cli"]


def command(ctx: Context) -> list[str]:
    """run-due's argv: this program, this root and repository, the password file if given."""
    argv = [*program(), *root_opt(ctx)]
    if ctx.args.password_file:
        argv += ["--password-file", str(Path(ctx.args.password_file).absolute())]
    return [*argv, "run-due"]


def writable_paths(ctx: Context, copy_to: list[str]) -> list[str]:
    """What the sandboxed service may write: the root (logs, repositories), a repository
    elsewhere, the object cache in front of a bucket, and every local copy-to target.
    Everything else is read-only to it (it only reads the data it backs up)."""
    paths = [str(ctx.root)]
    repo = ctx.repository
    if repo and ":" not in repo.split("/", 1)[0]:
        paths.append(str(Path(repo).expanduser().absolute()))
    elif repo:  # a bucket: the local cache of its objects (core/storage/cache.py's rule)
        cache = os.environ.get("NEXUS_BACKUP_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nexus-backup"
        )
        paths.append(str(Path(cache).absolute()))
    for target in copy_to:
        if target.startswith("file://"):
            target = target.removeprefix("file://")
        if ":" not in target.split("/", 1)[0]:
            paths.append(str(Path(target).expanduser().absolute()))
    return sorted(set(paths))


def _in_tmp(path: str) -> bool:
    return any(path == t or path.startswith(t + "/") for t in ("/tmp", "/var/tmp"))


def render_units(
    argv: list[str],
    writable: list[str],
    *,
    system: bool,
    read: list[str] = (),
    owner: str = "",
) -> Units:
    """The service (a oneshot run-due, niced, idle I/O, sandboxed where that never blocks
    reading the data) and its timer (every five minutes, caught up after downtime).
    `read`: the data directories; one under /tmp leaves PrivateTmp off (it would hide it)."""
    exec_start = " ".join(_exec_word(a) for a in argv)
    private_tmp = not any(_in_tmp(p) for p in [*writable, *read])
    sandbox = [
        "NoNewPrivileges=yes",
        "Nice=10",
        "IOSchedulingClass=idle",
        "CPUSchedulingPolicy=batch",
    ]
    if system:
        # a user manager cannot set up mount namespaces everywhere (no unprivileged user
        # namespaces): these only in the system unit
        sandbox += [
            *(["PrivateTmp=yes"] if private_tmp else []),
            "ProtectSystem=strict",
            "ReadWritePaths=" + " ".join(_path_word(p) for p in writable),
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
        ]
    mark = [f"{UNIT_MARK}{owner}"] if owner else []
    service = "\n".join(
        [
            *mark,
            "[Unit]",
            "Description=nexus-backup: run the scheduled backups that are due",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            f"ExecStart={exec_start}",
            *sandbox,
            "",
        ]
    )
    timer = "\n".join(
        [
            *mark,
            "[Unit]",
            "Description=nexus-backup: check the scheduled backups every five minutes",
            "",
            "[Timer]",
            f"OnCalendar={EVERY}",
            "Persistent=true",
            "RandomizedDelaySec=60",
            "AccuracySec=30s",
            f"Unit={NAME}.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return Units(service, timer)


def cron_line(argv: list[str], owner: str = "") -> str:
    """Every five minutes, niced; its output (only when something ran or failed) is what
    cron mails to the user. The mark ends with a digest of `owner` (hex: nothing cron or the
    shell reads), so that each root's line is told from another root's."""
    words = " ".join(_cron_word(a) for a in argv)
    return f"{CRON_EVERY} nice -n 10 {words} {CRON_MARK}{_cron_tag(owner)}"


def _cron_tag(owner: str) -> str:
    return f" {hashlib.sha256(owner.encode()).hexdigest()[:16]}" if owner else ""


def owner(ctx: Context) -> str:
    """The options naming this repository, as one line: whose run-due a unit runs."""
    return " ".join(_cron_word(plain(w, "the repository")) for w in root_opt(ctx))


def _unit_owner(path: Path) -> str | None:
    """Whose unit `path` is: the options its mark names ("" for one an older install wrote,
    before the mark), or None when it is not ours (the user's own unit of that name, a link,
    anything but a regular file). The caller knows it exists."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    if lines and lines[0].startswith(UNIT_MARK):
        return lines[0][len(UNIT_MARK) :]
    if len(lines) > 1 and lines[0] == "[Unit]" and lines[1] in _LEGACY_DESCRIPTIONS:
        return ""
    return None


def _refuse_foreign_units(paths: list[Path], ours: str, doing: str) -> None:
    """UsageError, before anything is written or removed, when a unit at one of `paths` is
    not this repository's: a file of that name the user wrote (or a link), or the unit of
    another root (its backups would silently stop)."""
    for path in paths:
        if not os.path.lexists(path):
            continue
        found = _unit_owner(path)
        if found is None:
            raise UsageError(
                f"{clean(str(path))} exists and was not written by schedule install (or is a "
                f"link): it is not {doing}; nothing was changed (move it away, or give "
                "--unit-dir)"
            )
        if found and found != ours:
            raise UsageError(
                f"{clean(str(path))} runs run-due for another repository ({clean(found)}), "
                f"not {doing}: nothing was changed (run schedule remove with those options "
                "first, or give --unit-dir)"
            )


def unit_dir(args: object, *, system: bool) -> tuple[Path, bool]:
    """Where the units go and whether systemctl is to be called (not with a given dir)."""
    given = getattr(args, "unit_dir", None) or os.environ.get(ENV_UNIT_DIR)
    if given:
        return Path(given).expanduser().absolute(), False
    if system:
        return Path("/etc/systemd/system"), True
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "systemd" / "user", True


def systemd_running() -> bool:
    """systemd is the init here (what `sd_booted()` checks) and systemctl exists."""
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def _systemctl(system: bool, *args: str) -> None:
    argv = ["systemctl", *([] if system else ["--user"]), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise UsageError(f"{shlex.join(argv)} failed: {why}")


def _copy_targets(ctx: Context, summaries: list[ProjectSummary]) -> list[str]:
    targets = []
    for s in summaries:
        if s.locked:
            continue
        to = run(ctx.manager.settings(s.project_id)).get("copy_to")
        if isinstance(to, str) and to:
            targets.append(plain(to, f"project {s.project_id}'s copy-to"))
    return targets


def cmd_schedule(ctx: Context) -> int:
    action = ctx.args.action
    if action == "install":
        return _install(ctx)
    if action == "remove":
        return _remove(ctx)
    return _status(ctx)


def _install(ctx: Context) -> int:
    a = ctx.args
    system = bool(a.system)
    argv = command(ctx)
    directory, call = unit_dir(a, system=system)
    ours = owner(ctx)
    if a.cron or (call and not systemd_running() and not a.dry_run):
        line = cron_line(argv, ours)
        if not a.crontab:
            out("systemd is not running here: add this line to your crontab (crontab -e),")
            out("or run this again with --crontab to have it added:")
            out(line)
            return EXIT_OK
        return _install_crontab(line, ours)
    summaries: list[ProjectSummary] = run(ctx.manager.projects())
    writable = writable_paths(ctx, _copy_targets(ctx, summaries))
    read = [s.data_dir for s in summaries if s.data_dir]
    units = render_units(argv, writable, system=system, read=read, owner=ours)
    paths = [directory / f"{NAME}{suffix}" for suffix in (".service", ".timer")]
    _refuse_foreign_units(paths, ours, "replaced")
    if a.dry_run:
        out(f"# {directory / (NAME + '.service')}")
        out(units.service)
        out(f"# {directory / (NAME + '.timer')}")
        out(units.timer)
        return EXIT_OK
    directory.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".service", units.service), (".timer", units.timer)):
        write_unit(directory, f"{NAME}{suffix}", text)
    if call:
        _systemctl(system, "daemon-reload")
        _systemctl(system, "enable", "--now", f"{NAME}.timer")
    out(f"Installed {NAME}.service and {NAME}.timer in {clean(directory)}")
    out("run-due runs every five minutes; each project's policy --schedule decides what is due.")
    if not call:
        out("(not enabled: a unit directory was given, so systemctl was not called)")
    if not system:
        out("A user timer runs while you are logged in; to run it always: loginctl enable-linger")
    return EXIT_OK


def write_unit(directory: Path, name: str, text: str) -> None:
    """`directory/name` replaced whole by `text`: written to a temp file made there anew
    (O_EXCL, a random name: never a file or link someone put at a name known in advance),
    fsynced, then renamed over the unit."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o644)  # as units usually are (mkstemp makes 0600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _install_crontab(line: str, ours: str) -> int:
    """The crontab with this repository's line replaced (or added): another root's line,
    marked with its own digest, stays; a line an older install wrote (the bare mark) is
    replaced."""
    if shutil.which("crontab") is None:
        raise UsageError("no crontab command here: add the line by hand")
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    mine = (f"{CRON_MARK}{_cron_tag(ours)}", CRON_MARK)
    lines = [x for x in current.stdout.splitlines() if not x.rstrip().endswith(mine)]
    new = "\n".join([*lines, line]) + "\n"
    proc = subprocess.run(["crontab", "-"], input=new, text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        error_line(f"crontab refused the line: {proc.stderr.strip()}")
        return EXIT_ERROR
    out("Added to your crontab:")
    out(line)
    return EXIT_OK


def _remove(ctx: Context) -> int:
    a = ctx.args
    system = bool(a.system)
    directory, call = unit_dir(a, system=system)
    paths = [directory / f"{NAME}{suffix}" for suffix in (".timer", ".service")]
    _refuse_foreign_units(paths, owner(ctx), "removed")
    if call and systemd_running() and paths[0].exists():
        _systemctl(system, "disable", "--now", f"{NAME}.timer")
    removed = [p for p in paths if p.exists()]
    for p in removed:
        p.unlink()
    if call and systemd_running() and removed:
        _systemctl(system, "daemon-reload")
    if removed:
        out(f"Removed {', '.join(p.name for p in removed)} from {clean(directory)}")
    else:
        out(f"No {NAME} units in {clean(directory)}: nothing to remove")
    return EXIT_OK


def _when(t: datetime | None) -> str:
    if t is None:
        return "-"
    return f"{t:%Y-%m-%d %H:%M} UTC"


def _status(ctx: Context) -> int:
    summaries: list[ProjectSummary] = run(ctx.manager.projects())
    if ctx.json:
        ctx.emit(summaries)
        return EXIT_OK
    rows = []
    for s in summaries:
        if s.locked:
            rows.append([s.project_id, "(locked: no password)", "-", "-", "-"])
            continue
        last = s.last_run
        result = "-" if last is None else last.status
        if last is not None and last.status == "failed" and last.error:
            result += f": {last.error[:40]}"
        nxt = _when(s.next_run) if s.schedule else "-"
        if s.overdue:
            nxt += " OVERDUE"
        rows.append(
            [
                s.project_id,
                s.schedule or "(none)",
                _when(None if last is None else last.started_at),
                result,
                nxt,
            ]
        )
    if not rows:
        out("No projects.")
    else:
        headers = ["PROJECT", "SCHEDULE", "LAST RUN", "RESULT", "NEXT RUN"]
        out("\n".join(table(headers, rows, set())))
    directory, _call = unit_dir(ctx.args, system=False)
    system_dir, _ = unit_dir(ctx.args, system=True)
    found = [d for d in (directory, system_dir) if os.path.lexists(d / f"{NAME}.timer")]
    out(_timer_line(found[0] / f"{NAME}.timer", owner(ctx)) if found else NOT_INSTALLED)
    return EXIT_OK


NOT_INSTALLED = "Timer: not installed (schedule install), so nothing runs run-due by itself"


def _timer_line(timer: Path, ours: str) -> str:
    """What the timer at `timer` is to this repository: its own (or one an older install
    wrote), the user's own file of that name, or another root's."""
    found = _unit_owner(timer)
    where = clean(str(timer.parent))
    if found is None:
        return (
            f"Timer: {NAME}.timer in {where} was not written by schedule install (the user's "
            "own, or a link): nothing runs run-due for this repository by itself"
        )
    if found and found != ours:
        return (
            f"Timer: {NAME}.timer in {where} runs another repository ({clean(found)}): "
            "nothing runs run-due for this one by itself"
        )
    return f"Timer: {NAME}.timer installed in {where}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", metavar="ACTION", choices=["install", "status", "remove"])
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--user", action="store_true", help="the user's systemd manager (the default)"
    )
    which.add_argument(
        "--system", action="store_true", help="the system's (/etc/systemd/system; as root)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the units, write nothing")
    p.add_argument(
        "--unit-dir",
        metavar="DIR",
        default=None,
        help=f"write the units here and do not call systemctl (default: ${ENV_UNIT_DIR}, "
        "else the manager's own directory)",
    )
    p.add_argument("--cron", action="store_true", help="print a cron line instead of units")
    p.add_argument("--crontab", action="store_true", help="with cron: add the line to your crontab")
