"""Start an encrypted project's key derivation while a command imports the engine.

A command on an encrypted project spends its first fraction of a second importing (pydantic,
the engine) and then as long again in Argon2id before it reads anything. Neither needs the
other: when the command names one project of a local repository that holds key objects, and
its password is given without a terminal, the first key the unlock will try (the first by
id, as `Repository.unlock` tries them) is derived in a thread meanwhile
(`crypto.derive_ahead`). The unlock itself is unchanged: it takes that result when the
parameters, salt and password are the ones it needs, and otherwise derives as before. Nothing
here prompts, writes or can fail a command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def start(
    root: Path, repository: str | None, project_id: str, password: Callable[[str], str | None]
) -> None:
    """`password(project_id)`: the password given without a terminal, or None."""
    try:
        _start(root, repository, project_id, password)
    except Exception:  # an optimisation only: the unlock reports whatever is wrong
        return


def _start(
    root: Path, repository: str | None, project_id: str, password: Callable[[str], str | None]
) -> None:
    # Only what the engine imports anyway, and no pydantic: what is gained is the time the
    # engine's own imports take.
    from core.config import project_store, resolve_repository
    from core.repo import crypto
    from core.storage.url import local_path, open_store

    where = local_path(resolve_repository(repository, root))
    if where is None or not where.is_dir():
        return  # a bucket is not asked anything before the engine opens it
    store = project_store(open_store(where), project_id)
    key_ids = crypto.key_ids(store)
    if not key_ids:
        return  # a plain project (or none): no password is asked, none is read
    given = password(project_id)
    if given is not None:
        crypto.derive_ahead(store.get(crypto.KEYS + key_ids[0]), given)
