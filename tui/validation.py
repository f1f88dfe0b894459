"""Input validators and a directory completer for the forms (checked as you type)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from textual.suggester import Suggester
from textual.validation import ValidationResult, Validator

from core.config import process_bound
from core.models import Tags, check_id
from tui.format import name
from tui.format import path as shown

_TAGS = TypeAdapter(Tags)


def expand(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path.strip())))


def is_other_directory(chosen: str, remembered: str | None) -> bool:
    """Whether `chosen` is not the directory a project remembers, compared as the engine
    stores it (expanded and absolute, symlinks not resolved): the form asks before backing
    it up exactly when the engine would refuse without `data_dir_change`."""
    if not remembered:
        return False
    return expand(chosen).absolute() != expand(remembered).absolute()


def parse_tags(text: str) -> dict[str, str]:
    """'env=prod, nightly' -> {'env': 'prod', 'nightly': ''}; raises ValueError when invalid."""
    tags: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        key = key.strip()
        if not key:
            raise ValueError(f"tag {part!r} has no key")
        tags[key] = value.strip()
    try:
        return _TAGS.validate_python(tags)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


def parse_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


class ExistingDirectory(Validator):
    """A readable directory: what a backup can start from."""

    def validate(self, value: str) -> ValidationResult:
        if not value.strip():
            return self.failure("enter a directory")
        path = expand(value)
        if not path.exists():
            return self.failure(f"{shown(path)} does not exist")
        if not path.is_dir():
            return self.failure(f"{shown(path)} is not a directory")
        if not os.access(path, os.R_OK | os.X_OK):
            return self.failure(f"{shown(path)}: permission denied")
        return self.success()


class RestoreTarget(Validator):
    """A directory to restore into: absent (it will be created) or a writable directory."""

    def validate(self, value: str) -> ValidationResult:
        if not value.strip():
            return self.failure("enter a target directory")
        path = expand(value)
        if not path.is_absolute():
            return self.failure("use an absolute path")
        if path.exists() and not path.is_dir():
            return self.failure(f"{shown(path)} exists and is not a directory")
        if path.exists() and not os.access(path, os.W_OK | os.X_OK):
            return self.failure(f"{shown(path)}: permission denied")
        parent = next((p for p in path.parents if p.exists()), None)
        if not path.exists() and (parent is None or not os.access(parent, os.W_OK | os.X_OK)):
            return self.failure(
                f"cannot create {shown(path)}: {shown(str(parent))} is not writable"
            )
        return self.success()


def is_store_url(value: str) -> bool:
    """`s3://bucket/prefix` and the like: a repository the engine opens by URL (the engine
    names an unknown scheme itself)."""
    head, sep, _ = value.strip().partition("://")
    return bool(sep) and head.isalnum() and not head.isdigit()


class CopyTarget(Validator):
    """Where to copy a project's backups: a store URL, or a directory to hold (or holding) a
    repository, which the restore rules judge: absent and creatable, or a writable directory."""

    def validate(self, value: str) -> ValidationResult:
        if not value.strip():
            return self.failure("enter a directory or an s3://bucket/prefix URL")
        if is_store_url(value):
            if process_bound(value.strip()):
                return self.failure("a memory:// store is gone when the TUI ends: not a target")
            return self.success()
        result = RestoreTarget().validate(value)
        if not result.is_valid:
            return self.failure(
                result.failure_descriptions[0].replace("target directory", "target")
            )
        return self.success()


def describe_copy_target(value: str) -> str:
    """A one-line description of a valid copy target, shown under the field."""
    if is_store_url(value):
        return f"✓ the repository at {name(value.strip())}"
    path = expand(value)
    if (path / "backups").is_dir():
        return f"✓ the repository in {shown(path)} (what it holds is kept)"
    if path.exists():
        return f"✓ a new repository in {shown(path)}"
    return f"✓ a new repository: {shown(path)} will be created"


class TagList(Validator):
    def validate(self, value: str) -> ValidationResult:
        try:
            parse_tags(value)
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


class ProjectId(Validator):
    def __init__(self, existing: set[str]) -> None:
        super().__init__()
        self.existing = existing

    def validate(self, value: str) -> ValidationResult:
        try:
            check_id(value, "project id")
        except ValueError as exc:
            return self.failure(str(exc))
        if value in self.existing:
            return self.failure(f"project {value!r} already exists")
        return self.success()


def describe_dir(value: str) -> str:
    """A one-line description of a valid directory, shown under the field."""
    path = expand(value)
    try:
        with os.scandir(path) as it:
            count = sum(1 for _ in it)
    except OSError:
        return shown(path)
    return f"✓ {shown(path)} ({count} entr{'y' if count == 1 else 'ies'})"


def suggest_project_id(directory: str) -> str:
    name = expand(directory).name or "project"
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip(".-_")
    return (cleaned or "project")[:64]


class DirectorySuggester(Suggester):
    """Completes the last path component with an existing directory (accept with →)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value or value.endswith(os.sep):
            return None
        path = expand(value)
        parent, prefix = path.parent, path.name
        try:
            with os.scandir(parent) as it:
                names = sorted(
                    e.name
                    for e in it
                    if e.name.startswith(prefix)
                    and e.name != prefix
                    and not (e.name.startswith(".") and not prefix.startswith("."))
                    and e.is_dir()
                )
        except OSError:
            return None
        if not names:
            return None
        return value + names[0][len(prefix) :]
