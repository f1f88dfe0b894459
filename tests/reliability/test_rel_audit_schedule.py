"""An audit of `schedule install|remove` (invariant I15) as a careless user and a hostile
neighbour would try it: a unit of the same name the user wrote, another root's units in the
same unit directory, roots whose paths are prefixes of one another, a unit directory (or a
unit) that is a symbolic link. Real CLI processes, real files; each test checks the bytes of
the unit files, the exit code and the one error line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NAME = "nexus-backup-run-due"
SERVICE, TIMER = f"{NAME}.service", f"{NAME}.timer"

#: A unit of the very name ours has, written by the user for a job of their own.
USERS_SERVICE = "[Unit]\nDescription=my own job\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n"
USERS_TIMER = "[Unit]\nDescription=my own timer\n\n[Timer]\nOnCalendar=daily\n"


def nb(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    full.update(PYTHONUNBUFFERED="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def one_error_line(r: subprocess.CompletedProcess, *words: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, (r.args, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    ok(nb(root, "create", "web", str(data)))
    return root


def _exec_start(units: Path) -> str:
    text = (units / SERVICE).read_text()
    return next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))


@pytest.mark.parametrize("which", [SERVICE, TIMER])
def test_install_never_overwrites_a_unit_of_that_name_the_user_wrote(root, tmp_path, which):
    """A unit the user wrote under our name (their own job) is not ours to replace: install
    refuses, one line, and neither unit is written (no half-installed pair)."""
    units = tmp_path / "units"
    units.mkdir()
    (units / which).write_text(USERS_SERVICE if which == SERVICE else USERS_TIMER)
    before = files(units)
    one_error_line(nb(root, "schedule", "install", "--unit-dir", str(units)), which)
    assert files(units) == before


@pytest.mark.parametrize("which", [SERVICE, TIMER])
def test_remove_never_deletes_a_unit_of_that_name_the_user_wrote(root, tmp_path, which):
    units = tmp_path / "units"
    units.mkdir()
    (units / which).write_text(USERS_SERVICE if which == SERVICE else USERS_TIMER)
    before = files(units)
    one_error_line(nb(root, "schedule", "remove", "--unit-dir", str(units)), which)
    assert files(units) == before


def test_a_reinstall_replaces_our_own_units_and_remove_removes_them(root, tmp_path):
    """What install wrote is ours: installed twice (another password file the second time),
    the units are the second's; remove leaves the directory as it found it."""
    units = tmp_path / "units"
    units.mkdir()
    (units / "mine.service").write_text(USERS_SERVICE)
    ok(nb(root, "schedule", "install", "--unit-dir", str(units)))
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    ok(nb(root, "--password-file", str(pw), "schedule", "install", "--unit-dir", str(units)))
    assert str(pw) in _exec_start(units)
    ok(nb(root, "schedule", "remove", "--unit-dir", str(units)))
    assert files(units) == {"mine.service": USERS_SERVICE.encode()}


@pytest.mark.parametrize("other_name", ["root2", "ro"])
def test_another_roots_units_are_neither_replaced_nor_removed(root, tmp_path, other_name):
    """Two roots (one's path a prefix of the other's) and one unit directory: the second
    root's install would silently stop the first's backups, its remove would delete the
    first's timer. Both are refused with one line naming the other root; the first's units
    stay byte for byte, and its own remove still works."""
    other, data = tmp_path / other_name, tmp_path / "data2"
    data.mkdir()
    ok(nb(other, "create", "web2", str(data)))
    units = tmp_path / "units"
    ok(nb(root, "schedule", "install", "--unit-dir", str(units)))
    before = files(units)
    assert f"--root {root} " in _exec_start(units) or f"--root '{root}'" in _exec_start(units)
    line = one_error_line(nb(other, "schedule", "install", "--unit-dir", str(units)))
    assert str(root) in line
    assert files(units) == before
    line = one_error_line(nb(other, "schedule", "remove", "--unit-dir", str(units)))
    assert str(root) in line
    assert files(units) == before
    ok(nb(root, "schedule", "remove", "--unit-dir", str(units)))
    assert files(units) == {}
    # the directory free again, the other root installs
    ok(nb(other, "schedule", "install", "--unit-dir", str(units)))
    assert f"{other}" in _exec_start(units)


def test_a_unit_that_is_a_link_to_the_users_file_is_neither_written_through_nor_replaced(
    root, tmp_path
):
    """A unit that is a symbolic link (home-manager links units into a store of their own)
    to a file the user wrote: the file it points at is never written, and the link is not
    replaced by ours either (it is not ours)."""
    units, theirs = tmp_path / "units", tmp_path / "dotfiles"
    units.mkdir()
    theirs.mkdir()
    (theirs / SERVICE).write_text(USERS_SERVICE)
    (units / SERVICE).symlink_to(theirs / SERVICE)
    one_error_line(nb(root, "schedule", "install", "--unit-dir", str(units)), SERVICE)
    assert (units / SERVICE).is_symlink()
    assert (theirs / SERVICE).read_text() == USERS_SERVICE
    assert files(units) == {SERVICE: USERS_SERVICE.encode()}
    one_error_line(nb(root, "schedule", "remove", "--unit-dir", str(units)), SERVICE)
    assert (units / SERVICE).is_symlink() and (theirs / SERVICE).read_text() == USERS_SERVICE


def test_a_unit_directory_that_is_a_link_is_written_where_it_points(root, tmp_path):
    """The unit directory a link to another (dotfiles): the units land in the directory it
    names, nothing else there changes, and remove takes exactly them away."""
    real, link = tmp_path / "dotfiles-units", tmp_path / "units"
    real.mkdir()
    (real / "mine.timer").write_text(USERS_TIMER)
    link.symlink_to(real)
    ok(nb(root, "schedule", "install", "--unit-dir", str(link)))
    assert sorted(files(real)) == ["mine.timer", SERVICE, TIMER]
    assert link.is_symlink()
    ok(nb(root, "schedule", "remove", "--unit-dir", str(link)))
    assert files(real) == {"mine.timer": USERS_TIMER.encode()} and link.is_symlink()


def test_a_unit_directory_that_cannot_be_written_is_one_line(root, tmp_path):
    """A link to a read-only directory (a Nix store, a mount): one line, no traceback, no
    temp file left."""
    if os.geteuid() == 0:
        # root writes through 0555; a file where the directory should be fails for everyone
        target = tmp_path / "not-a-dir"
        target.write_text("x")
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o555)
    link = tmp_path / "units"
    link.symlink_to(target)
    one_error_line(nb(root, "schedule", "install", "--unit-dir", str(link)))
    if target.is_dir():
        assert files(target) == {}


def test_crontab_install_keeps_another_roots_line(root, tmp_path):
    """The crontab is one per user: the line of another root (installed first) stays when
    this root installs its own, and a reinstall of either keeps exactly one line each."""
    table = tmp_path / "crontab.txt"
    table.write_text("MAILTO=me@example.org\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "crontab"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-l" ]; then cat {table}; else cat > {table}; fi\n')
    fake.chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    other, data = tmp_path / "root2", tmp_path / "data2"
    data.mkdir()
    ok(nb(other, "create", "web2", str(data)))
    for r in (other, root, other, root):
        ok(nb(r, "schedule", "install", "--cron", "--crontab", PATH=path))
    lines = table.read_text().splitlines()
    assert lines[0] == "MAILTO=me@example.org", lines
    ours = lines[1:]
    assert len(ours) == 2, lines
    assert sum(f"--root {root} " in ln for ln in ours) == 1, ours
    assert sum(f"--root {other} " in ln for ln in ours) == 1, ours


def test_status_says_whose_timer_is_there(root, tmp_path):
    """status named any file at the timer's name as installed: the user's own timer of that
    name, or another root's, read as this repository's schedule being run. It says whose."""
    units = tmp_path / "units"
    units.mkdir()
    (units / TIMER).write_text(USERS_TIMER)
    said = ok(nb(root, "schedule", "status", "--unit-dir", str(units)))
    assert "was not written by schedule install" in said and "installed in" not in said
    (units / TIMER).unlink()
    ok(nb(root, "schedule", "install", "--unit-dir", str(units)))
    assert f"{TIMER} installed in" in ok(nb(root, "schedule", "status", "--unit-dir", str(units)))
    other, data = tmp_path / "root2", tmp_path / "data2"
    data.mkdir()
    ok(nb(other, "create", "web2", str(data)))
    said = ok(nb(other, "schedule", "status", "--unit-dir", str(units)))
    assert "runs another repository" in said and str(root) in said, said
