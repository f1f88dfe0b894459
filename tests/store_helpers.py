"""Store-agnostic helpers for the engine suites that run on every store (conftest's `engine`):
they reach a repository's objects through its store, never through a path."""

from __future__ import annotations

from core.manager import BackupManager
from core.repo.repository import Repository
from core.storage import ObjectStore


def project_store(manager: BackupManager, project_id: str) -> ObjectStore:
    """A project's objects, as the engine stores them, wherever they are."""
    return manager.store.sub(f"backups/{project_id}")


def reopen(manager: BackupManager) -> BackupManager:
    """A fresh manager on the same repositories, as a new process would open them."""
    return BackupManager(manager.root, repository=manager.store.url, password=manager._password)


def open_repository(manager: BackupManager, project_id: str) -> Repository:
    """A project's repository as the engine opens it, unlocked when it is encrypted."""
    repo = Repository(manager.root, project_id, project_store(manager, project_id))
    if repo.encrypted():
        repo.unlock(manager._password(project_id))
    return repo


def object_names(store: ObjectStore, prefix: str) -> list[str]:
    return [o.name for o in store.list(prefix)]


def stored_bytes(store: ObjectStore) -> int:
    return sum(o.size for o in store.list())


def flip_byte(store: ObjectStore, name: str, offset: int) -> None:
    """Damage one byte of an object in place, as a bad disk would."""
    data = bytearray(store.get(name))
    data[offset] ^= 0xFF
    store.put(name, bytes(data))


class Tap:
    """A store that calls `hook(n, op, name)` after its n-th write (put, put_new, put_file,
    delete) has landed: a test cuts the power, or copies the repository, at exactly that
    moment. Views made by `sub` share the count."""

    WRITES = ("put", "put_new", "put_file", "delete", "delete_prefix")

    def __init__(self, store: ObjectStore, hook, _count: list[int] | None = None) -> None:
        self._store = store
        self._hook = hook
        self._count = _count if _count is not None else [0]

    def sub(self, prefix: str) -> Tap:
        return Tap(self._store.sub(prefix), self._hook, self._count)

    def __getattr__(self, attr: str):
        value = getattr(self._store, attr)
        if attr not in self.WRITES:
            return value

        def write(name, *args, **kwargs):
            result = value(name, *args, **kwargs)
            self._count[0] += 1
            self._hook(self._count[0], attr, name)
            return result

        return write


def fast_kdf(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Argon2id at its cheapest for this test's new keys (the parameters are recorded in
    each key, so opening them needs nothing else)."""
    from core.repo import crypto

    monkeypatch.setattr(crypto, "KDF_MEMORY_KIB", 64)
    monkeypatch.setattr(crypto, "KDF_ITERATIONS", 1)
    monkeypatch.setattr(crypto, "KDF_LANES", 1)
