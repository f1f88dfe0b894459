"""The stores every contract test runs on. A new store adds itself to STORES (a factory that
gets the test's request and a tmp_path, and gives a fresh, empty store) and must pass
tests/storage/test_store_contract.py unchanged."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from storage.seaweed import SeaweedServer
from storage.seaweed import start as start_seaweed

from core.storage import ObjectStore
from core.storage.cache import CachedStore
from core.storage.instrumented import InstrumentedStore
from core.storage.local import LocalStore
from core.storage.memory import MemoryStore
from core.storage.s3 import S3Store


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return LocalStore(tmp_path / "store")


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return MemoryStore().sub("project")


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh prefix on the session's SeaweedFS (one server per xdist worker)."""
    server = request.getfixturevalue("seaweed")
    return S3Store.from_url(server.url(f"t-{secrets.token_hex(6)}"), server.env())


def _s3_cached(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """S3 behind the local cache, as open_store gives it to the engine."""
    return CachedStore(_s3(request, tmp_path), tmp_path / "cache")


def _instrumented(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The local store behind serve's request counter (issue 15): it must change nothing."""
    return InstrumentedStore(LocalStore(tmp_path / "store"))  # type: ignore[return-value]


STORES: dict[str, Callable[[pytest.FixtureRequest, Path], ObjectStore]] = {
    "local": _local,
    "memory": _memory,
    "s3": _s3,
    "s3-cached": _s3_cached,
    "instrumented": _instrumented,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    made = STORES[request.param](request, tmp_path)
    made.prepare()
    return made


@pytest.fixture
def private_seaweed() -> Iterator[SeaweedServer]:
    """A server of this test's own, to kill and restart without disturbing the others."""
    server = start_seaweed()
    try:
        yield server
    finally:
        server.stop()
