"""The local cache in front of a remote store: a second look at a repository downloads no
index file or manifest again, and a cached copy that is damaged, stale or of an object
rewritten meanwhile is never served."""

from __future__ import annotations

from pathlib import Path

from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.storage import open_store
from core.storage.cache import CachedStore


async def test_a_second_look_is_served_from_the_cache_and_survives_damage(
    s3_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        (data / f"f{i}.txt").write_text(f"file {i}\n" * 1000)
    first = await BackupManager(tmp_path / "one", repository=s3_url).create(
        CreateRequest(project_id="web", data_dir=str(data))
    )
    mgr = BackupManager(tmp_path / "two", repository=s3_url)
    store = mgr.store
    assert isinstance(store, CachedStore)
    again = await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    assert again.stats.files_unchanged == 5
    fetched = store.misses
    assert fetched >= 2  # the index file and the parent's manifest, once

    other = BackupManager(tmp_path / "three", repository=s3_url)  # a new process, same cache
    await other.info("web", first.id)
    third = await other.create(CreateRequest(project_id="web", data_dir=str(data)))
    assert third.stats.files_unchanged == 5
    assert other.store.hits >= 2  # the index and the manifest came from the cache

    # every cached copy damaged: each one is fetched again, nothing wrong is read
    cache = Path(tmp_path / "s3-cache")
    damaged = 0
    for path in cache.rglob("*"):
        if path.is_file():
            raw = bytearray(path.read_bytes())
            raw[-1] ^= 0xFF
            path.write_bytes(bytes(raw))
            damaged += 1
    assert damaged >= 2
    fresh = BackupManager(tmp_path / "four", repository=s3_url)
    assert (await fresh.verify("web", third.id)).ok
    out = tmp_path / "out"
    await fresh.restore(RestoreRequest(project_id="web", backup_id=first.id, restore_dir=str(out)))
    assert (out / "f3.txt").read_text() == "file 3\n" * 1000
    assert fresh.store.misses >= 2 and fresh.store.hits == 0


def test_a_rewritten_object_is_not_served_from_the_cache(s3_url: str) -> None:
    """Cached by (name, etag): an object written again under its name (which the engine never
    does for these, but a person might) is read anew."""
    name = "backups/web/backup_x/data/manifest.zst"
    store = open_store(s3_url)
    store.prepare()
    store.put(name, b"one")
    assert store.get(name) == b"one"
    store.put(name, b"two")
    assert [o.name for o in store.list("backups/")] == [name]
    assert store.get(name) == b"two"
    assert open_store(s3_url).get(name) == b"two"
