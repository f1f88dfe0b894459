"""The projects of a repository root, as the faces look at them: ids, existence, and a cheap
per-project change token. Everything goes through the root's store (`backups/{project_id}/`),
so it is the same question on a disk and in a bucket."""

from __future__ import annotations

import zlib

from core.errors import InvalidInput
from core.models import check_id
from core.repo.repository import BACKUP_PREFIX, CONFIG, LAST_RUN, POLICY, PROJECT
from core.storage import ObjectNotFound, ObjectStore

PROJECTS = "backups/"


def project_store(root: ObjectStore, project_id: str) -> ObjectStore:
    return root.sub(PROJECTS + check_id(project_id, "project_id"))


def listed(root: ObjectStore) -> list[str]:
    """Every name under `backups/`, a project or not (a damaged one has no config)."""
    try:
        return root.children(PROJECTS)
    except OSError:
        return []


def project_ids(root: ObjectStore) -> list[str]:
    """The projects by their repositories' config alone (one listing, one existence check
    each): the cheap first look, before a summary reads every project's metadata."""
    found = []
    for name in listed(root):
        try:
            if project_store(root, name).exists(CONFIG):
                found.append(name)
        except (InvalidInput, ValueError, OSError):
            continue
    return found


def project_exists(root: ObjectStore, project_id: str) -> bool:
    """Whether the project has any object (an id that is not a valid id has none)."""
    try:
        return bool(project_store(root, project_id).children())
    except (InvalidInput, ValueError, OSError):
        return False


def has_projects(root: ObjectStore) -> bool:
    return bool(listed(root))


def _stamp(store: ObjectStore, name: str) -> str:
    """A backup by its metadata.json, project.json by itself: the object's etag, which changes
    with every write (never its content)."""
    obj = f"{name}/metadata.json" if name.startswith(BACKUP_PREFIX) else name
    try:
        return f"{name}:{store.stat(obj).etag};"
    except ObjectNotFound:
        return f"{name}:-;"


def change_tokens(root: ObjectStore) -> dict[str, str]:
    """Per project, a token that changes whenever one of its backups is created, changes
    status or is deleted, or its settings, retention policy or last scheduled run change;
    another process's (or host's) included. One listing per project and one stat per backup,
    no object read."""
    tokens: dict[str, str] = {}
    for project in listed(root):
        try:
            store = project_store(root, project)
            crc = 0
            for name in store.children():
                if name.startswith(BACKUP_PREFIX) or name in (PROJECT, POLICY, LAST_RUN):
                    crc = zlib.crc32(_stamp(store, name).encode(), crc)
        except (InvalidInput, ValueError, OSError):
            continue
        tokens[project] = f"{crc:08x}"
    return tokens
