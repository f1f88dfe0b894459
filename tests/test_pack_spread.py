"""Under encryption a pack holds a random subset of the chunks written, not a run of one
file's consecutive chunks (restic 0.18's mitigation of chunking attacks, docs/design.md
§6.1); what a plain repository writes is unchanged. Real packs in a real local store, read
back through the codec."""

from __future__ import annotations

import os
from pathlib import Path

from core.repo import crypto
from core.repo.codec import PLAIN, Codec
from core.repo.packs import BlobLocation, PackWriter, pack_name, read_pack_entries
from core.storage.local import LocalStore

TARGET = 64 * 1024


def _write(tmp_path: Path, codec: Codec, blobs: list[bytes]) -> tuple[LocalStore, dict]:
    store = LocalStore(tmp_path / "store")
    store.prepare()
    found: dict[bytes, BlobLocation] = {}

    def indexed(_pack: str, locations: list[tuple[bytes, BlobLocation]]) -> None:
        for digest, loc in locations:
            assert digest not in found, "a blob indexed twice"
            found[digest] = loc

    writer = PackWriter(store, indexed, TARGET, codec=codec)
    for raw in blobs:
        digest = codec.chunk_id(raw)
        writer.add(digest, *_sealed(codec, digest, raw))
    writer.flush()
    assert not [p for p in (tmp_path / "store").rglob("*") if ".tmp" in p.name]  # no spool left
    return store, found


def _sealed(codec: Codec, digest: bytes, raw: bytes) -> tuple[bytes, int, int]:
    stored, flags = codec.seal_blob(digest, raw)
    return stored, len(raw), flags


def _runs(store: LocalStore, codec: Codec, order: list[bytes]) -> list[list[int]]:
    """Each pack's blobs, as their positions in the order they were written."""
    position = {d: i for i, d in enumerate(order)}
    return [
        [position[e[0]] for e in read_pack_entries(store, o.name, codec)]
        for o in store.list("packs/")
    ]


def _blobs(n: int) -> list[bytes]:
    return [os.urandom(3000 + 97 * i) for i in range(n)]


def test_encrypted_packs_hold_random_subsets_and_every_blob_reads_back(tmp_path: Path) -> None:
    codec = Codec(crypto.AeadCipher(crypto.new_master_key()))
    blobs = _blobs(120)
    store, found = _write(tmp_path, codec, blobs)
    order = [codec.chunk_id(b) for b in blobs]
    runs = _runs(store, codec, order)
    assert sorted(i for run in runs for i in run) == list(range(len(blobs)))
    # a pack of consecutive chunks is what betrays the boundaries: with 120 chunks spread at
    # random over two open packs, one pack's chunks being a contiguous run is ~2^-40 likely
    assert any(run != list(range(run[0], run[0] + len(run))) for run in runs)
    for raw, digest in zip(blobs, order, strict=True):
        loc = found[digest]
        sealed = store.get_range(pack_name(loc.pack_id), loc.offset, loc.length)
        assert codec.open_blob(digest, sealed, loc.flags, loc.raw_length) == raw


def test_a_small_encrypted_write_is_one_pack(tmp_path: Path) -> None:
    """The two packs left open are merged when they fit in one (two small packs would show
    the stored sizes of their few chunks)."""
    codec = Codec(crypto.AeadCipher(crypto.new_master_key()))
    for attempt in range(5):
        store, found = _write(tmp_path / str(attempt), codec, _blobs(6))
        assert len(list(store.list("packs/"))) == 1 and len(found) == 6


def test_plain_packs_are_written_in_order(tmp_path: Path) -> None:
    blobs = _blobs(120)
    store, _found = _write(tmp_path, PLAIN, blobs)
    runs = sorted(_runs(store, PLAIN, [PLAIN.chunk_id(b) for b in blobs]))
    assert [i for run in runs for i in run] == list(range(len(blobs)))
