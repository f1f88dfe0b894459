"""Where the CLI finds an encrypted project's password (issue 12), in this order:
`NEXUS_BACKUP_PASSWORD`, `--password-file F` (its first line), `--password-command CMD` (its
standard output's first line: a secret manager), else a prompt on the terminal, only when
standard input is one. Anything else is one error line (exit code 12), never a hang on a
prompt nobody sees. A copy's target is opened with `NEXUS_BACKUP_TO_PASSWORD`,
`--to-password-file F` or `--to-password-command CMD`, else with the project's own password.
New passwords (`key add`, `key passwd`, `create --encrypt`) come from
`NEXUS_BACKUP_NEW_PASSWORD`, `--new-password-file F`, else the terminal, asked twice.
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys

from core.errors import InvalidInput, WrongPassword

ENV_PASSWORD = "NEXUS_BACKUP_PASSWORD"
ENV_NEW_PASSWORD = "NEXUS_BACKUP_NEW_PASSWORD"
ENV_TO_PASSWORD = "NEXUS_BACKUP_TO_PASSWORD"
HOW = f"${ENV_PASSWORD}, --password-file F or --password-command CMD"
TO_HOW = f"${ENV_TO_PASSWORD}, --to-password-file F or --to-password-command CMD"


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _read_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            password = _first_line(f.read())
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} {path}: cannot be read ({exc})") from None
    if not password:
        raise InvalidInput(f"{what} {path}: its first line is empty")
    return password


def _run_command(command: str, what: str = "--password-command") -> str:
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise InvalidInput(f"{what}: cannot run {command!r} ({exc})") from None
    if done.returncode != 0:
        raise InvalidInput(f"{what}: {command!r} exited with {done.returncode}")
    password = _first_line(done.stdout)
    if not password:
        raise InvalidInput(f"{what}: {command!r} printed no password")
    return password


def _prompt(text: str) -> str:
    if not sys.stdin.isatty():
        raise WrongPassword(f"{text.rstrip(': ')}: none given ({HOW}; stdin is not a terminal)")
    return getpass.getpass(text)


class TargetPasswordSource:
    """The manager's `to_password(project_id)`: the password of a copy's target, from
    `NEXUS_BACKUP_TO_PASSWORD`, `--to-password-file F` or `--to-password-command CMD`, else
    `fallback` (the project's own password: a target under the same one needs nothing)."""

    def __init__(self, file: str | None, command: str | None, fallback: PasswordSource) -> None:
        self.file, self.command, self.fallback = file, command, fallback

    def __call__(self, project_id: str) -> str:
        if env := os.environ.get(ENV_TO_PASSWORD):
            return env
        if self.file:
            return _read_file(self.file, "--to-password-file")
        if self.command:
            return _run_command(self.command, "--to-password-command")
        return self.fallback(project_id)


class PasswordSource:
    """The manager's `password(project_id)`: asked once per project, then remembered for
    this process only."""

    def __init__(
        self,
        file: str | None = None,
        command: str | None = None,
        *,
        creating: bool = False,
        new_file: str | None = None,
    ) -> None:
        self.file, self.command, self.creating, self.new_file = file, command, creating, new_file
        self._known: dict[str, str] = {}
        self._failed: dict[str, InvalidInput] = {}

    def __call__(self, project_id: str) -> str:
        if project_id in self._failed:
            raise self._failed[project_id]
        if project_id not in self._known:
            self._known[project_id] = self._find(project_id)
        return self._known[project_id]

    def given(self) -> str | None:
        """The password given without a terminal (the environment, the file, the command),
        or None: what a server reads once at start, since nobody answers its prompts."""
        if env := os.environ.get(ENV_PASSWORD):
            return env
        if self.file:
            return _read_file(self.file, "--password-file")
        if self.command:
            return _run_command(self.command)
        return None

    def given_for(self, project_id: str) -> str | None:
        """`given()`, remembered as `project_id`'s password, for a caller that must not
        prompt: None when only a terminal could tell. A password command runs once: its
        failure is remembered too, and is what the unlock's own call raises."""
        if project_id not in self._known:
            try:
                given = self.given()
            except InvalidInput as exc:
                self._failed[project_id] = exc
                raise
            if given is None:
                return None
            self._known[project_id] = given
        return self._known[project_id]

    def _find(self, project_id: str) -> str:
        if (given := self.given()) is not None:
            return given
        if self.creating:
            return self.new(f"new password for project {project_id!r}")
        return _prompt(f"password for project {project_id!r}: ")

    def new(self, what: str) -> str:
        """A new password: from the environment or a file, else typed twice."""
        if env := os.environ.get(ENV_NEW_PASSWORD):
            return env
        if self.new_file:
            return _read_file(self.new_file, "--new-password-file")
        if not sys.stdin.isatty():
            raise InvalidInput(
                f"{what}: none given (${ENV_NEW_PASSWORD} or --new-password-file F; "
                "stdin is not a terminal)"
            )
        first = getpass.getpass(f"{what}: ")
        if not first:
            raise InvalidInput(f"{what}: an empty password is refused")
        if getpass.getpass("again: ") != first:
            raise InvalidInput(f"{what}: the two passwords differ")
        return first
