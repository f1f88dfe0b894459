"""Where the repository root is: `--root`, else NEXUS_BACKUP_ROOT, else a per-user data dir;
and where the repositories are, when not under it (`--repo`, NEXUS_BACKUP_REPOSITORY)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.ids import check_id

if TYPE_CHECKING:
    from core.storage import ObjectStore

ENV_ROOT = "NEXUS_BACKUP_ROOT"
#: Where a repository store keeps its projects: `{store}/backups/{project_id}/`.
PROJECTS = "backups/"
#: A project's repository config, its first object: a project exists when it does.
PROJECT_CONFIG = "config.json"


def project_store(root: ObjectStore, project_id: str) -> ObjectStore:
    """The part of a repository store that is one project's repository."""
    return root.sub(PROJECTS + check_id(project_id, "project_id"))


#: Where the repositories live when not under the root: a path or a store URL.
ENV_REPOSITORY = "NEXUS_BACKUP_REPOSITORY"
#: The HTTP API's bearer token when `serve` is given none, its port when given none, and the
#: shortest token it accepts (a short one is guessed; `secrets.token_urlsafe(32)` makes one).
ENV_TOKEN = "NEXUS_BACKUP_TOKEN"
DEFAULT_PORT = 8765
MIN_TOKEN_LENGTH = 16


def short_token(token: str) -> str | None:
    """Why the API's `token` is refused as too short to resist guessing; None when long enough
    (checked by `serve` in the CLI and in api.server, whatever the token's source)."""
    if len(token) >= MIN_TOKEN_LENGTH:
        return None
    return (
        f"the token is {len(token)} characters, shorter than {MIN_TOKEN_LENGTH}: make one with "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )


def default_root() -> Path:
    """The per-user data directory (XDG), which needs no setup."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "nexus-backup"


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    if root:
        return Path(root).expanduser().absolute()
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser().absolute()
    return default_root()


def resolve_repository(repository: str | os.PathLike[str] | None, root: Path) -> str | Path:
    """`--repo`, else NEXUS_BACKUP_REPOSITORY, else the root itself (`root/backups/...`)."""
    chosen = repository or os.environ.get(ENV_REPOSITORY)
    if not chosen:
        return root
    if isinstance(chosen, str) and ":" in chosen.split("/", 1)[0]:
        return chosen  # a URL: s3://..., file://..., memory://...
    return Path(chosen).expanduser().absolute()


#: Schemes of a store that lives and dies with one process (`memory://`, for tests).
PROCESS_BOUND = ("memory",)


def process_bound(url: str | Path) -> bool:
    """Whether the store `url` names is gone when this process ends: a face whose process
    ends with its command (the CLI, the TUI) refuses it as a repository or a copy target,
    else a backup or a copy it reports as done would be gone with it."""
    from urllib.parse import urlsplit

    from core.storage.url import is_url

    return isinstance(url, str) and is_url(url) and urlsplit(url).scheme in PROCESS_BOUND


def process_bound_refusal(url: str, what: str) -> str:
    """The one line that refuses `url` as `what` (a repository, a copy target)."""
    return (
        f"{what} {url}: a memory:// store lives inside one process (it is for tests): what "
        "this command wrote there would be gone when it ends; name a directory or an s3:// URL"
    )


def check_directory(path: Path, what: str = "the repository root") -> Path:
    """`path`, once it is known to be a directory or one that can be made: the nearest of it
    and its parents that exists must be a directory. Checked when a face opens the root, so
    that a root that is a file is one clear line (InvalidInput: exit 2, HTTP 422) in every
    face, not "no projects" on one command and an errno text on the next."""
    from core.errors import InvalidInput

    for existing in (path, *path.parents):
        try:
            is_dir = existing.is_dir()
            present = is_dir or existing.exists()
        except OSError:
            return path  # unreadable: the operation that needs it says why
        if not present:
            continue
        if is_dir:
            return path
        kind = "a file" if existing.is_file() else "not a directory"
        if existing == path:
            raise InvalidInput(f"{what} {path} is {kind}: name a directory")
        raise InvalidInput(f"{what} {path} cannot be made: {existing} is {kind}")
    return path
