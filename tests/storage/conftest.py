"""The stores every contract test runs on. A new store adds itself to STORES (a factory that
gets a fresh, empty store under tmp_path) and must pass tests/storage/test_store_contract.py
unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.storage import ObjectStore
from core.storage.local import LocalStore
from core.storage.memory import MemoryStore


def _local(tmp_path: Path) -> ObjectStore:
    return LocalStore(tmp_path / "store")


def _memory(tmp_path: Path) -> ObjectStore:
    return MemoryStore().sub("project")


STORES: dict[str, Callable[[Path], ObjectStore]] = {"local": _local, "memory": _memory}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    made = STORES[request.param](tmp_path)
    made.prepare()
    return made
