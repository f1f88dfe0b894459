"""`schedule install|status|remove` (issue 14): the generated units pass `systemd-analyze
verify`, their timer's calendar is one systemd reads, the service's command really runs
run-due, and install/remove touch only the unit directory given (never the real user's
systemd: --unit-dir and $NEXUS_BACKUP_UNIT_DIR mean systemctl is never called)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cli.commands.schedule import plain
from cli.context import UsageError
from cli.main import main
from core.repo.repository import Repository

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
HAVE_SYSTEMD = os.access(SYSTEMD_ANALYZE, os.X_OK)
NAME = "nexus-backup-run-due"


def nb(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root, data = tmp_path / "root 100% $HOME", tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    assert nb(root, "create", "web", str(data)) == 0
    assert nb(root, "policy", "set", "web", "--schedule", "daily 03:00") == 0
    return root


def _verify(*units: Path) -> None:
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert proc.returncode == 0, proc.stderr
    noise = [ln for ln in proc.stderr.splitlines() if NAME in ln]
    assert not noise, proc.stderr  # nothing said about our units


def _exec_start(service: Path) -> list[str]:
    """ExecStart as systemd splits it: quoted words, `%%` and `$$` unescaped."""
    line = next(ln for ln in service.read_text().splitlines() if ln.startswith("ExecStart="))
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line[10:])]


@pytest.mark.skipif(not HAVE_SYSTEMD, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("which", ["--system", "--user"])
def test_installed_units_pass_systemd_analyze_verify_and_run(project, tmp_path, which) -> None:
    units = tmp_path / "units"
    assert nb(project, "schedule", "install", which, "--unit-dir", str(units)) == 0
    service, timer = units / f"{NAME}.service", units / f"{NAME}.timer"
    _verify(service, timer)
    text = timer.read_text()
    assert "Persistent=true" in text and "RandomizedDelaySec=" in text
    calendar = re.search(r"^OnCalendar=(.+)$", text, re.M).group(1)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", calendar], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and "Next elapse" in proc.stdout, proc.stderr
    body = service.read_text()
    assert "Nice=" in body and "IOSchedulingClass=idle" in body and "NoNewPrivileges=yes" in body
    if which == "--system":
        assert "ProtectSystem=strict" in body
        # the root may be written (it is under /tmp here: no PrivateTmp to hide it)
        assert f'ReadWritePaths="-{str(project).replace("%", "%%")}"' in body
        assert "PrivateTmp" not in body
    # the service's command, as systemd reads it, is a working run-due on this root
    argv = _exec_start(service)
    assert argv[-1] == "run-due" and Path(argv[0]).is_file()
    assert argv[argv.index("--root") + 1] == str(project)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_dry_run_writes_nothing_and_remove_undoes_install(project, tmp_path, capsys) -> None:
    units = tmp_path / "units"
    assert nb(project, "schedule", "install", "--dry-run", "--unit-dir", str(units)) == 0
    printed = capsys.readouterr().out
    assert "[Timer]" in printed and "ExecStart=" in printed and not units.exists()
    os.environ["NEXUS_BACKUP_UNIT_DIR"] = str(units)
    try:
        assert nb(project, "schedule", "install") == 0
        assert sorted(p.name for p in units.iterdir()) == [f"{NAME}.service", f"{NAME}.timer"]
        (units / "other.service").write_text("[Service]\nExecStart=/bin/true\n")
        capsys.readouterr()
        assert nb(project, "schedule", "status") == 0
        status = capsys.readouterr().out
        assert "web" in status and "daily 03:00" in status and f"{NAME}.timer installed" in status
        assert nb(project, "schedule", "remove") == 0
        assert [p.name for p in units.iterdir()] == ["other.service"]  # only ours removed
        capsys.readouterr()
        assert nb(project, "schedule", "remove") == 0
        assert "nothing to remove" in capsys.readouterr().out
    finally:
        del os.environ["NEXUS_BACKUP_UNIT_DIR"]


def test_cron_line_and_status_json(project, capsys) -> None:
    capsys.readouterr()
    assert nb(project, "schedule", "install", "--cron") == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    fields = line.split(" ", 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    argv = shlex.split(fields[5].split(" # ")[0])
    assert argv[:3] == ["nice", "-n", "10"] and argv[-1] == "run-due"
    assert argv[argv.index("--root") + 1] == str(project)
    assert nb(project, "--json", "schedule", "status") == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["schedule"] == "daily 03:00" and summary["next_run"].endswith("03:00:00Z")


def test_crontab_keeps_the_users_other_lines(project, tmp_path, monkeypatch, capsys) -> None:
    """--crontab rewrites the user's crontab: every line of theirs stays, ours is there once
    however often it is installed. (No cron here: a `crontab` on PATH that keeps the table in
    a file, as crontab -l / crontab - do.)"""
    table = tmp_path / "crontab.txt"
    table.write_text("MAILTO=me@example.org\n0 4 * * * /usr/local/bin/mine  # nexus-backup\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "crontab"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-l" ]; then cat {table}; else cat > {table}; fi\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for _ in range(2):
        assert nb(project, "schedule", "install", "--cron", "--crontab") == 0
    lines = table.read_text().splitlines()
    assert lines[:2] == ["MAILTO=me@example.org", "0 4 * * * /usr/local/bin/mine  # nexus-backup"]
    ours = [ln for ln in lines if "# nexus-backup run-due" in ln]
    assert len(ours) == 1 and len(lines) == 3


# --- values are data, never directives (invariant I15) ------------------------------------

#: What a value tries to add: a directive of its own in a unit, a line of its own in cron.
INJECTED = "\nExecStartPost=/bin/touch /tmp/pwned\n*/1 * * * * /bin/touch /tmp/pwned"


def _service_keys(service: Path) -> list[str]:
    return [ln.split("=", 1)[0] for ln in service.read_text().splitlines() if "=" in ln]


def _expected_keys(tmp_path: Path) -> list[str]:
    """The directives of the system service, in order (PrivateTmp only outside /tmp)."""
    in_tmp = str(tmp_path).startswith(("/tmp/", "/var/tmp/"))
    keys = ["Description", "Wants", "After", "Type", "ExecStart", "NoNewPrivileges", "Nice"]
    keys += ["IOSchedulingClass", "CPUSchedulingPolicy", *([] if in_tmp else ["PrivateTmp"])]
    keys += ["ProtectSystem", "ReadWritePaths", "ProtectKernelTunables", "ProtectKernelModules"]
    return [*keys, "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality"]


def _fake_crontab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `crontab` on PATH keeping the table in a file (crontab -l / crontab -)."""
    table = tmp_path / "crontab.txt"
    table.write_text("MAILTO=me@example.org\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "crontab"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-l" ]; then cat {table}; else cat > {table}; fi\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return table


#: (where the value is, how the units are asked for): the cron line names no copy-to.
_CASES = [
    (where, how)
    for where in ("copy-to", "root", "repo", "password-file")
    for how in ("--system", "--user", "--cron", "--crontab", "--dry-run")
    if not (where == "copy-to" and how in ("--cron", "--crontab"))
]


@pytest.mark.parametrize("char", ["\n", "\r"])
@pytest.mark.parametrize(("where", "how"), _CASES)
def test_a_control_character_in_any_value_is_refused_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, char: str, where: str, how: str
) -> None:
    """A newline or a CR (systemd ends a line at either) in the copy-to target, the root,
    the repository or the password file's path, followed by a directive and a cron line:
    one error line, exit 2, no unit, no cron line (nothing printed to paste either)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    evil = INJECTED.replace("\n", char)
    root = tmp_path / (f"root{evil}" if where == "root" else "root")
    if where == "repo":
        monkeypatch.setenv("NEXUS_BACKUP_REPOSITORY", str(tmp_path / f"repo{evil}"))
    assert nb(root, "create", "web", str(data)) == 0
    if where == "copy-to":
        # refused when set now; stored as an older version (or a hand edit) could have
        assert nb(root, "settings", "web", "copy-to", str(tmp_path / f"copy{evil}")) == 2
        Repository(root, "web").save_settings(copy_to=str(tmp_path / f"copy{evil}"))
    pre = ["--password-file", str(tmp_path / f"pw{evil}")] if where == "password-file" else []
    table = _fake_crontab(tmp_path, monkeypatch)
    units = tmp_path / "units"
    flags = {"--cron": ["--cron"], "--crontab": ["--cron", "--crontab"]}.get(how, [how])
    capsys.readouterr()
    code = main(
        ["--root", str(root), *pre, "schedule", "install", *flags, "--unit-dir", str(units)]
    )
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: error: "), captured.err
    assert "control character" in lines[0] and "nothing was written" in lines[0]
    assert "ExecStart" not in captured.out and "pwned" not in captured.out
    assert not units.exists()
    assert table.read_text() == "MAILTO=me@example.org\n"


@pytest.mark.skipif(not HAVE_SYSTEMD, reason="systemd-analyze is not installed")
def test_quotes_percent_dollar_and_backslash_reach_systemd_as_they_are(tmp_path: Path) -> None:
    """A root and a copy-to target holding `%` (specifiers), `$` (variables, in a command
    line only), quotes, backslashes, `;` and spaces: the unit passes `systemd-analyze
    verify`, has exactly its own directives, and systemd's own reading of ExecStart and
    ReadWritePaths (its dump) gives back the very paths."""
    odd = "a 100%% %n $HOME ${X} \"q\" 'q' back\\slash \\n ; x"
    root, data = tmp_path / f"root {odd}", tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    assert nb(root, "create", "web", str(data)) == 0
    copy = tmp_path / f"copy {odd}"
    assert nb(root, "settings", "web", "copy-to", str(copy)) == 0
    units = tmp_path / "units"
    assert nb(root, "schedule", "install", "--system", "--unit-dir", str(units)) == 0
    service, timer = units / f"{NAME}.service", units / f"{NAME}.timer"
    _verify(service, timer)
    assert _service_keys(service) == _expected_keys(tmp_path)
    dump = _systemd_dump(service)
    commands = [ln for ln in dump if ln.startswith("Command Line:")]
    assert len(commands) == 1, dump  # ExecStart's, and no other Exec*= anywhere
    argv = [w.replace("$$", "$") for w in _sh_words(commands[0].removeprefix("Command Line: "))]
    assert argv[argv.index("--root") + 1] == str(root) and argv[-1] == "run-due"
    assert argv == _exec_start(service)
    (paths,) = [ln for ln in dump if ln.startswith("ReadWritePaths:")]
    want = " ".join(f"-{p}" for p in sorted({str(root), str(copy)}))
    assert paths == f"ReadWritePaths: {want}"


def _systemd_dump(service: Path) -> list[str]:
    """The unit as systemd parsed it: the dump `systemd-analyze verify` prints on stdout
    when it logs at debug level, its lines stripped."""
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(service)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
    )
    assert proc.returncode == 0, proc.stderr
    start = proc.stdout.index(f"-> Unit {service.name}:")
    return [ln.strip() for ln in proc.stdout[start:].splitlines()]


def _sh_words(text: str) -> list[str]:
    """The words /bin/sh splits `text` into (systemd's dump quotes a command line for it)."""
    proc = subprocess.run(
        ["/bin/sh", "-c", f"printf '%s\\0' {text}"], capture_output=True, check=True, timeout=30
    )
    return proc.stdout.decode().split("\0")[:-1]


def _cron_reads(command: str) -> tuple[str, str | None]:
    """The command as cron hands it to /bin/sh, and what it sends to its standard input
    (crontab(5), Debian cron's do_command: `\\%` is `%`, a bare `%` ends the command and the
    rest is input, every other backslash stays)."""
    out: list[str] = []
    escaped = False
    for i, c in enumerate(command):
        if escaped:
            escaped = False
            if c == "%":
                out[-1] = "%"
                continue
        elif c == "\\":
            escaped = True
        elif c == "%":
            return "".join(out), command[i + 1 :]
        out.append(c)
    return "".join(out), None


@pytest.mark.parametrize(
    "odd", ["100% done", "a\\%b", "a\\\\%b", "%", "%%", "q'uo\"te $HOME `id` ; 5%\\"]
)
def test_the_cron_line_runs_run_due_with_the_very_root_through_cron_and_sh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd: str
) -> None:
    """The line added to the crontab is one line; cron's `%` rule leaves the whole command
    (nothing sent as input), and /bin/sh then runs `nice` with the very argv: the root's
    `%`, backslashes before it, quotes and `$` are data."""
    root, data = tmp_path / f"root {odd}", tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    assert nb(root, "create", "web", str(data)) == 0
    table = _fake_crontab(tmp_path, monkeypatch)
    assert nb(root, "schedule", "install", "--cron", "--crontab") == 0
    lines = table.read_text().splitlines()
    assert lines[0] == "MAILTO=me@example.org" and len(lines) == 2, lines
    fields = lines[1].split(" ", 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    command, stdin = _cron_reads(fields[5])
    assert stdin is None, (fields[5], stdin)
    got = tmp_path / "argv"
    nice = tmp_path / "bin" / "nice"
    nice.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > '{got}'\n")
    nice.chmod(0o755)
    subprocess.run(["/bin/sh", "-c", command], check=True, timeout=30)
    argv = got.read_bytes().decode().split("\0")[:-1]
    assert argv[:2] == ["-n", "10"] and argv[-1] == "run-due"
    assert argv[argv.index("--root") + 1] == str(root)


def test_a_link_planted_at_a_temp_files_name_redirects_no_write(tmp_path: Path, project) -> None:
    """The old temp names (`.NAME.service.tmp`), and any name known in advance, made links
    to a victim's file: the victim stays as it was, the units are files of their own."""
    units = tmp_path / "units"
    units.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("a stranger's file\n")
    for suffix in (".service", ".timer"):
        (units / f".{NAME}{suffix}.tmp").symlink_to(victim)
    assert nb(project, "schedule", "install", "--system", "--unit-dir", str(units)) == 0
    assert victim.read_text() == "a stranger's file\n"
    for suffix in (".service", ".timer"):
        unit = units / f"{NAME}{suffix}"
        assert not unit.is_symlink() and unit.is_file()
        assert unit.stat().st_mode & 0o777 == 0o644
        assert "[Unit]" in unit.read_text()
    names = sorted(p.name for p in units.iterdir())
    assert names == sorted(
        [f".{NAME}.service.tmp", f".{NAME}.timer.tmp", f"{NAME}.service", f"{NAME}.timer"]
    )  # no temp file of ours left


@pytest.mark.parametrize("char", ["\t", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\udc80"])
def test_every_control_character_is_refused_and_plain_text_passes(char: str) -> None:
    """Beyond newline and CR: any control character, a line separator, a byte that is not
    UTF-8 (a lone surrogate) is refused; letters of any script, spaces and quotes pass."""
    with pytest.raises(UsageError, match="control character"):
        plain(f"/srv/a{char}b", "the root")
    assert plain("/srv/ünï cödé 日本 'q' \"q\" $%", "the root") == "/srv/ünï cödé 日本 'q' \"q\" $%"
