"""The projects of a repository root, as the faces look at them: ids, existence, and a cheap
per-project change token. Everything goes through the root's store (`backups/{project_id}/`),
so it is the same question on a disk and in a bucket."""

from __future__ import annotations

import re
import zlib

from core.config import PROJECTS, project_store
from core.errors import InvalidInput
from core.repo.repository import BACKUP_PREFIX, CONFIG, LAST_RUN, POLICY, PROJECT
from core.storage import ObjectNotFound, ObjectStore

#: Put first when a project is deleted: from then on the project is in no listing, cannot be
#: made again under its name, and a delete cut short is finished by the next one.
DELETING = "project-deleting"
#: The objects a project delete leaves to the end: the locks (its own among them) and the
#: marker.
_KEPT_TO_THE_END = ("locks/", DELETING)


def listed(root: ObjectStore) -> list[str]:
    """Every name under `backups/`, a project or not (a damaged one has no config); none in
    a root not made yet. A store that cannot be listed (no permission, a bucket that is not
    there, wrong credentials, no network) raises: "no projects" would be a lie, and a
    timer's `run-due` would succeed while nothing can be backed up."""
    return root.children(PROJECTS)


def project_ids(root: ObjectStore) -> list[str]:
    """The projects by their repositories' config alone (one listing, one existence check
    each): the cheap first look, before a summary reads every project's metadata."""
    found = []
    for name in listed(root):
        try:
            store = project_store(root, name)
            if store.exists(CONFIG) and not store.exists(DELETING):
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


#: The names a project's repository holds (docs/design.md §1): a project delete removes these
#: and nothing else, so a stranger's file (in a directory symlinked into the place of a
#: project, say) is left where it is.
_OURS = re.compile(
    r"[a-z][a-z0-9_-]*\.json"
    r"|(?:packs|index|keys|locks|run-locks|deleting|quarantine|clock)/[^/]+(?:/[^/]+)?"
    r"|quarantine/packs/[^/]+/[^/]+"  # a pack set aside by rebuild-index, one level deeper
    r"|backup_[A-Za-z0-9._-]+/.+"
)
#: Directories of a local store that hold no objects (spooled uploads).
_SCRATCH = ("spool",)


#: A directory of the layout, which an object store may hold as a "folder" object of its own
#: (`index/`, written by an S3 console or an s3fs mount, listed by obstore without its `/`).
_FOLDER = re.compile(
    r"(?:packs|index|keys|locks|run-locks|deleting|quarantine|clock|backup_[A-Za-z0-9._-]+)"
)


def ours(name: str, size: int) -> bool:
    """Whether a project delete removes the object: a name of the layout, or an empty object
    named as one of its directories (a folder marker: it holds nothing, and left it kept the
    project listed and its name refused by `create` for ever)."""
    return bool(_OURS.fullmatch(name)) or (size == 0 and bool(_FOLDER.fullmatch(name)))


def delete_objects(store: ObjectStore) -> tuple[int, int, list[str]]:
    """Every object of a project whose DELETING marker is written, config.json first (so an
    older version no longer sees a project either), the locks and the marker left to the
    caller; returns the objects and bytes deleted, and the names left as not ours."""
    store.delete(CONFIG)
    count = size = 0
    strangers = []
    for obj in list(store.list()):
        if obj.name.startswith(_KEPT_TO_THE_END):
            continue
        if not ours(obj.name, obj.size):
            strangers.append(obj.name)
            continue
        store.delete(obj.name)
        count, size = count + 1, size + obj.size
    # the empty directories a killed delete left (unlinked, not yet removed) are no
    # stranger's: a local store removes them, never one that holds anything
    prune = getattr(store, "remove_empty_dirs", None)
    if prune is not None:
        prune()
    # what no listing shows is left too, and said: a link in a directory's place
    for name in store.children():
        if name not in (*_SCRATCH, "locks", DELETING) and not any(
            s.startswith(name + "/") or s == name for s in strangers
        ):
            strangers.append(name)
    return count, size, strangers


def finish_delete(root: ObjectStore, project_id: str) -> None:
    """After the delete's own lock is released: what locks are left (a process that waited
    for the project finds no config and stops), scratch directories, then the marker,
    through the parent store, so a local project directory left empty goes with it."""
    store = project_store(root, project_id)
    for obj in list(store.list("locks/")):
        store.delete(obj.name)
    for name in _SCRATCH:
        store.delete_prefix(name + "/")
    root.sub(PROJECTS).delete(f"{project_id}/{DELETING}")


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
    try:
        names = listed(root)
    except OSError:  # a poll: what cannot be reached is said by the loads a change starts
        return tokens
    for project in names:
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
