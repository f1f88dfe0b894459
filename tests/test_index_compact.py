"""The in-memory index keeps one packed record per chunk; it must answer exactly as the
index files say (first location of a chunk wins), and refuse damaged files whole."""

from __future__ import annotations

import random

import pytest

from core.repo.index import Index, IndexFormatError, decode_index, encode_index, index_packs
from core.repo.packs import BlobLocation


def _locations(rng: random.Random, n: int, packs: list[str]) -> list[tuple[bytes, BlobLocation]]:
    return [
        (
            rng.randbytes(32),
            BlobLocation(
                rng.choice(packs),
                rng.randrange(1 << 32),
                rng.randrange(1 << 32),
                rng.randrange(1 << 32),
                rng.randrange(256),
            ),
        )
        for _ in range(n)
    ]


def test_compact_index_answers_as_the_files_say():
    rng = random.Random(5)
    packs = [rng.randbytes(32).hex() for _ in range(7)]
    first = _locations(rng, 500, packs)
    # a second file listing some of the same chunks elsewhere: the first location is kept
    second = [(d, BlobLocation(packs[0], 1, 2, 3, 4)) for d, _ in first[:50]]
    second += _locations(rng, 100, packs)
    index = Index()
    want: dict[bytes, BlobLocation] = {}
    for locs in (first, second):
        index._load(encode_index(locs))
        for d, loc in decode_index(encode_index(locs)):
            want.setdefault(d, loc)
    assert len(index) == len(want) == len(index.entries)
    assert dict(index.entries.items()) == want
    assert set(index.entries) == set(want) == set(index.entries.keys())
    assert all(index.get(d) == loc and d in index and d in index.entries for d, loc in want.items())
    assert index.get(b"\0" * 32) is None and b"\0" * 32 not in index
    with pytest.raises(KeyError):
        index.entries[b"\0" * 32]
    by_pack = index.packs()
    assert {d for ds in by_pack.values() for d, _ in ds} == set(want)
    assert all(loc.pack_id == p for p, ds in by_pack.items() for _, loc in ds)
    # add() replaces, as the dict did
    d = first[0][0]
    index.add(d, BlobLocation(packs[3], 9, 8, 7, 6))
    assert index.get(d) == BlobLocation(packs[3], 9, 8, 7, 6)


def test_damaged_index_file_adds_nothing():
    rng = random.Random(6)
    data = encode_index(_locations(rng, 10, [rng.randbytes(32).hex()]))
    index = Index()
    for bad in (data[:-1], data[:20], b"x" + data[1:]):
        with pytest.raises(IndexFormatError):
            index._load(bad)
    assert len(index) == 0
    _body, packs = index_packs(data)
    assert len(packs) == 1 and packs[0][2] == 10
