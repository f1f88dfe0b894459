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

from cli.main import main

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
        assert f'ReadWritePaths="-{str(project).replace("%", "%%").replace("$", "$$")}"' in body
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
    ours = [ln for ln in lines if ln.endswith("# nexus-backup run-due")]
    assert len(ours) == 1 and len(lines) == 3
