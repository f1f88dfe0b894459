"""Start an encrypted project's key derivation while a command imports the engine.

A command on an encrypted project spends its first fraction of a second importing (pydantic,
the engine) and then as long again in Argon2id before it reads anything. Neither needs the
other: when the command names one project of a local repository that holds key objects, and
its password is given without a terminal, the first key the unlock will try (the first by
id, as `Repository.unlock` tries them) is derived in a thread meanwhile
(`crypto.derive_ahead`). For `create --encrypt` of a project that does not exist yet, the
salt of its first key object is drawn now and that key derived meanwhile
(`crypto.new_key_ahead`). The unlock itself is unchanged: it takes that result when the
parameters, salt and password are the ones it needs, and otherwise derives as before. Nothing
here prompts, writes or can fail a command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def start(
    root: Path,
    repository: str | None,
    project_id: str,
    password: Callable[[str], str | None],
    *,
    creating: bool = False,
) -> None:
    """`password(project_id)`: the password given without a terminal, or None; `creating`:
    the command creates the project encrypted when it does not exist (`create --encrypt`)."""
    try:
        _start(root, repository, project_id, password, creating)
    except Exception:  # an optimisation only: the unlock reports whatever is wrong
        return


def _start(
    root: Path,
    repository: str | None,
    project_id: str,
    password: Callable[[str], str | None],
    creating: bool,
) -> None:
    # Only what the engine imports anyway, and no pydantic: what is gained is the time the
    # engine's own imports take.
    from core.config import PROJECT_CONFIG, project_store, resolve_repository
    from core.repo import crypto
    from core.storage.url import local_path, open_store

    where = local_path(resolve_repository(repository, root))
    if where is None:
        return  # a bucket is not asked anything before the engine opens it
    store = project_store(open_store(where), project_id) if where.is_dir() else None
    key_ids = crypto.key_ids(store) if store is not None else []
    new = not key_ids and creating and (store is None or not store.exists(PROJECT_CONFIG))
    if not key_ids and not new:
        return  # a plain project: no password is asked, none is read
    given = password(project_id)
    if given is None:
        return
    if key_ids:
        crypto.derive_ahead(store.get(crypto.KEYS + key_ids[0]), given)
    else:
        crypto.new_key_ahead(given)  # for the key object `create --encrypt` will make
