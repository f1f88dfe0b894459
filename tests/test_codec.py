"""The codec layer (core/repo/codec.py): every repository object is sealed on write and
opened on read through it.

What is written is byte for byte what format 1 wrote before the layer existed; a repository
written then (tests/fixtures/format1, by tests/fixtures/make_format1.py) reads unchanged and
is laid out as docs/design.md says; a damaged object of any kind is one line, never a wrong
plaintext; and a repository under another cipher (a toy stand-in for issue 12's) works
everywhere with no object left in the clear, which proves that nothing reads or writes
around the codec.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import struct
from pathlib import Path

import blake3
import pytest
import zstandard

from core.errors import Damaged
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.repo import manifest as mf
from core.repo.chunker import hash_bytes
from core.repo.codec import PLAIN, Codec, DamagedChunk, DamagedManifest, DamagedObject, Kind
from core.repo.index import decode_index, read_index_file, write_index
from core.repo.packs import PackWriter, header_length, parse_header
from core.repo.repository import Repository
from core.storage.memory import MemoryStore
from core.validator import validate_restore_point

FIXTURE_PROJECT = "fixture"


def pseudo_random(seed: bytes, n: int) -> bytes:
    """Incompressible bytes, the same on every machine (BLAKE3's extendable output)."""
    return blake3.blake3(seed).digest(length=n)


def fixture_tree(d: Path) -> None:
    """The tree the format-1 fixture backed up first: a compressible file with a hard link,
    an incompressible one, two chunks of zeros, names that are not UTF-8 or not ASCII, a
    symlink and an empty directory."""
    (d / "dir" / "nested").mkdir(parents=True)
    (d / "empty").mkdir()
    (d / "hello.txt").write_bytes(b"hello, format 1\n" * 64)
    os.link(d / "hello.txt", d / "hello-link.txt")
    (d / "random.bin").write_bytes(pseudo_random(b"fixture random", 20_000))
    (d / "zeros.bin").write_bytes(bytes(5 * 1024 * 1024))
    (d / "dir" / "nested" / "été.txt").write_bytes(b"unicode name\n")
    (Path(os.fsdecode(os.fsencode(d) + b"/bad\xffname.txt"))).write_bytes(b"not utf-8\n")
    os.symlink("hello.txt", d / "link")


def mutate_fixture_tree(d: Path) -> None:
    """What changed before the fixture's second (incremental) backup."""
    (d / "random.bin").write_bytes(pseudo_random(b"fixture random 2", 30_000))
    (d / "new.txt").write_bytes(b"added in round 2\n")


def content_tree(top: Path) -> dict[bytes, tuple]:
    """Every path under `top` with its kind and bytes (or target): what a restore must give
    back, whatever the times (the fixture's tree was built on another day)."""
    out: dict[bytes, tuple] = {}
    base = os.fsencode(top)
    for dirpath, dirs, files in os.walk(base):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            if os.path.islink(full):
                out[rel] = ("l", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("d",)
            else:
                with open(full, "rb") as f:
                    out[rel] = ("f", f.read())
    return out


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    return text


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def cut_and_garbage(sealed: bytes) -> list[bytes]:
    """Truncations of a sealed object, garbage of its length, zeros, a byte too many."""
    cuts = sorted({0, 1, len(sealed) // 2, len(sealed) - 1})
    forms = [sealed[:n] for n in cuts if n < len(sealed)]
    forms += [pseudo_random(b"garbage", max(len(sealed), 1)), b"\0" * len(sealed), sealed + b"x"]
    return [f for f in forms if f != sealed]


def damaged_forms(sealed: bytes, *, bits: int | None = None) -> list[bytes]:
    """`cut_and_garbage`, and single-bit flips (of every bit, or of `bits` spread evenly)."""
    forms = cut_and_garbage(sealed)
    total = len(sealed) * 8
    step = 1 if bits is None or bits >= total else total // bits
    forms += [flip(sealed, bit) for bit in range(0, total, step)]
    return [f for f in forms if f != sealed]


_TOY_FWD = bytes((i * 7 + 3) % 256 for i in range(256))  # 7 is odd: a permutation


class ToyCipher:
    """A stand-in for issue 12's AEAD cipher, for tests only (it is not encryption): every
    byte is permuted, so an object that bypassed the codec would show in the clear; a tag
    over (kind, context, plaintext) makes a damaged or swapped object fail to open."""

    name = "toy"
    overhead = 20
    _FWD = _TOY_FWD
    _BACK = bytes(_TOY_FWD.index(i) for i in range(256))

    @staticmethod
    def _tag(kind: Kind, data: bytes, context: bytes) -> bytes:
        return blake3.blake3(kind.value.encode() + b"\0" + context + b"\0" + data).digest()[:16]

    def seal(self, kind: Kind, data: bytes, context: bytes) -> bytes:
        data = bytes(data)
        return b"TOY1" + self._tag(kind, data, context) + data.translate(self._FWD)

    def open(self, kind: Kind, sealed: bytes, context: bytes) -> bytes:
        if len(sealed) < self.overhead or sealed[:4] != b"TOY1":
            raise ValueError("not sealed by the toy cipher")
        data = sealed[self.overhead :].translate(self._BACK)
        if self._tag(kind, data, context) != sealed[4:20]:
            raise ValueError("does not authenticate")
        return data

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return hash_bytes(data)


TOY = Codec(ToyCipher())
WHOLE_KINDS = [k for k in Kind if k is not Kind.BLOB]


# --- byte for byte what the code before the codec layer wrote -----------------------------

#: Written by the code at 62fb3f3 (before this layer) for `golden_blobs()` and
#: `golden_manifest()`: digest, length and flags of each sealed blob, the manifest's frame,
#: the pack and the index file holding the blobs. zstd's output is only stable within one
#: library version, so these are checked against the version that produced them.
GOLDEN_ZSTD = (1, 5, 7)
GOLDEN_BLOBS = {
    "text": ("3f52c44afa193918e5e766c12f6ee2fa664f8a3c5cbb501a08e5d21ff678e146", 33, 1),
    "empty": ("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262", 0, 0),
    "small_random": ("36955be6badf3e7240cdda2377d630be913e977743b5781a4d01c45229a94190", 20000, 0),
    "sampled_random": (
        "e60bc879bbcc204dbd0b0da9343e295b80b4234aadd0a995d69542a0156053f4",
        300000,
        0,
    ),
    "zeros_mib": ("dbcbfba715ef7f9df6349330d0e6f7f8bc1b2ad58928a32f5b68f71a3f42a2d1", 50, 1),
    "half": ("7eb675699f8232f4b9449819e2a44aa9eb30da579b615755b599f8c931ac6145", 150061, 1),
}
GOLDEN_MANIFEST = (
    "057951373986b48df5863a941d4894e07c2cd8739edd2f9eae8c75473dc71164",
    930377,
    "blake3:8c3654a1224da6a3ec7cf2ca4afb947feb436e098ad91f28849b72368f5534e0",
)
GOLDEN_PACK = "packs/db/db68bfc2e7e7c6081e50449e15c338998aa69e29853a0c15cf6f61106b5b95fb"
GOLDEN_INDEX = "58c09f517a1a3ad7940866513c43804e4031e70b21f6ba824f5f1bf99ae38564"

same_zstd = pytest.mark.skipif(
    tuple(zstandard.ZSTD_VERSION) != GOLDEN_ZSTD,
    reason=f"golden outputs were made with zstd {GOLDEN_ZSTD}, not {zstandard.ZSTD_VERSION}",
)


def golden_blobs() -> dict[str, bytes]:
    return {
        "text": b"hello, format 1\n" * 64,
        "empty": b"",
        "small_random": pseudo_random(b"golden small", 20_000),
        "sampled_random": pseudo_random(b"golden sampled", 300_000),
        "zeros_mib": bytes(1 << 20),
        "half": pseudo_random(b"golden half", 150_000) + bytes(150_000),
    }


def golden_manifest() -> tuple[bytes, str]:
    w = mf.ManifestWriter({"backup_id": "golden"})
    w.add(mf.Entry(path=b"a", kind=mf.DIR, mode=0o40755, mtime_ns=1, ctime_ns=2))
    w.add(
        mf.Entry(
            path=b"a/bad\xff",
            kind=mf.FILE,
            mode=0o100600,
            mtime_ns=3,
            hash="0" * 64,
            xattrs={b"user.k": b"\x00v"},
        )
    )
    w.add(mf.Entry(path=b"a/link", kind=mf.SYMLINK, mode=0o120777, mtime_ns=4, target=b"bad\xff"))
    for i in range(20_000):
        p = f"d{i // 100:03d}/file-{i:05d}.txt".encode()
        digest = blake3.blake3(p).hexdigest()
        w.add(
            mf.Entry(
                path=p,
                kind=mf.FILE,
                mode=0o100644,
                mtime_ns=1_700_000_000_000_000_000 + i,
                size=i,
                uid=1000,
                gid=1000,
                ino=10_000 + i,
                ctime_ns=1_700_000_000_000_000_001 + i,
                hash=digest,
                chunks=[(digest, i)],
            )
        )
    return w.finish()


@same_zstd
def test_sealed_blobs_are_byte_identical_to_format_1():
    for name, raw in golden_blobs().items():
        stored, flags = PLAIN.seal_blob(hash_bytes(raw), raw)
        assert (blake3.blake3(stored).hexdigest(), len(stored), flags) == GOLDEN_BLOBS[name], name
        assert PLAIN.open_blob(hash_bytes(raw), stored, flags, len(raw)) == raw


@same_zstd
def test_manifest_pack_and_index_are_byte_identical_to_format_1():
    frame, checksum = golden_manifest()
    sealed = PLAIN.seal(Kind.MANIFEST, frame, b"backup_x/data/manifest.zst")
    assert (blake3.blake3(sealed).hexdigest(), len(sealed), checksum) == GOLDEN_MANIFEST

    store = MemoryStore()
    store.prepare()
    locations: list = []
    writer = PackWriter(store, lambda _p, locs: locations.extend(locs), 1 << 24, codec=PLAIN)
    for raw in golden_blobs().values():
        writer.add(hash_bytes(raw), *_sealed(raw))
    writer.flush()
    assert writer.pack_names == [GOLDEN_PACK]
    name = write_index(store, PLAIN, locations)
    assert name == "index/" + GOLDEN_INDEX


def _sealed(raw: bytes) -> tuple[bytes, int, int]:
    stored, flags = PLAIN.seal_blob(hash_bytes(raw), raw)
    return stored, len(raw), flags


def test_plain_codec_seals_whole_objects_as_they_are():
    """Plain: what is stored is the plaintext itself, the very object (no copy)."""
    for kind in WHOLE_KINDS:
        data = b'{"x": 1}'
        assert PLAIN.seal(kind, data, b"name") is data
        assert PLAIN.open(kind, data, b"name") is data
        assert PLAIN.overhead(kind) == 0


def test_config_and_locks_stay_plain_under_any_cipher():
    for kind in (Kind.CONFIG, Kind.LOCK):
        assert TOY.seal(kind, b"{}") == b"{}" and TOY.open(kind, b"{}") == b"{}"
        assert TOY.overhead(kind) == 0
    assert TOY.seal(Kind.METADATA, b"{}") != b"{}" and TOY.overhead(Kind.INDEX) == 20


# --- a repository written by the code before this layer reads unchanged --------------------

FIXTURE = Path(__file__).parent / "fixtures" / "format1"


@pytest.fixture
def old_root(tmp_path: Path) -> Path:
    """A root holding the format-1 fixture project (tests/fixtures/make_format1.py)."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root / "backups" / FIXTURE_PROJECT)
    return root


def fixture_in_memory(codec: Codec = PLAIN) -> Repository:
    """The format-1 fixture project copied into a MemoryStore (for tests that rewrite its
    objects many times over), opened with `codec`."""
    store = MemoryStore()
    store.prepare()
    for path in FIXTURE.rglob("*"):
        if path.is_file():
            store.put(str(path.relative_to(FIXTURE)), path.read_bytes())
    return Repository(FIXTURE.parent, FIXTURE_PROJECT, store=store, codec=codec)


def _fixture_ids() -> list[str]:
    return sorted(p.name.removeprefix("backup_") for p in FIXTURE.glob("backup_*"))


async def test_repository_of_format_1_lists_verifies_and_restores(old_root, tmp_path):
    first, second = _fixture_ids()
    want_first, want_second = tmp_path / "want1", tmp_path / "want2"
    fixture_tree(want_first)
    fixture_tree(want_second)
    mutate_fixture_tree(want_second)
    manager = BackupManager(old_root)
    listed = await manager.list(FIXTURE_PROJECT)
    assert sorted(m.id for m in listed) == [first, second]
    for backup_id, want in ((first, want_first), (second, want_second)):
        assert (await manager.verify(FIXTURE_PROJECT, backup_id)).ok
        out = tmp_path / f"out-{backup_id}"
        result = await manager.restore(
            RestoreRequest(project_id=FIXTURE_PROJECT, backup_id=backup_id, restore_dir=str(out))
        )
        assert result.verified
        assert content_tree(out) == content_tree(want)
    check = await manager.check(FIXTURE_PROJECT, read_data=True)
    assert check.ok, check.errors
    repo = Repository(old_root, FIXTURE_PROJECT)
    assert repo.read_verify(second) is not None and repo.read_verify(second).ok
    assert repo.settings()["data_dir"].endswith("/src")


def test_format_1_bytes_are_as_docs_design_md_says(old_root):
    """docs/design.md §1 read as a specification: the fixture's packs, index files, manifests
    and metadata parsed by the layouts written there, with nothing of the engine's code, agree
    with what the engine reads from them."""
    base = old_root / "backups" / FIXTURE_PROJECT
    config = json.loads((base / "config.json").read_bytes())
    assert config["format"] == "nexus-backup" and config["version"] == 1
    assert config["hash"] == "blake3" and config["compression"] == {"algorithm": "zstd", "level": 3}
    assert set(config["chunker"]) == {
        "algorithm", "avg_size", "min_size", "max_size", "normalized_chunking", "seed"
    }  # fmt: skip

    packs: dict[str, dict[bytes, tuple[int, int, int, int]]] = {}
    for path in (base / "packs").glob("*/*"):
        data = path.read_bytes()
        pack_id = blake3.blake3(data).hexdigest()
        assert path.name == pack_id and path.parent.name == pack_id[:2]
        count, header_hash, magic = struct.unpack("<I16s8s", data[-28:])
        assert magic == b"NXPACK01"
        header = data[-28 - 41 * count : -28]
        assert blake3.blake3(header).digest()[:16] == header_hash
        offset, blobs = 0, {}
        for i in range(count):
            digest, stored, raw_len, flags = struct.unpack_from("<32sIIB", header, 41 * i)
            blob = data[offset : offset + stored]
            raw = zstandard.ZstdDecompressor().decompress(blob) if flags == 1 else blob
            assert flags in (0, 1) and len(raw) == raw_len and blake3.blake3(raw).digest() == digest
            blobs[digest] = (offset, stored, raw_len, flags)
            offset += stored
        assert offset + 41 * count + 28 == len(data)
        packs[pack_id] = blobs

    indexed: dict[bytes, tuple] = {}
    for path in (base / "index").iterdir():
        data = path.read_bytes()
        assert path.name == blake3.blake3(data).hexdigest()
        assert data[:8] == b"NXIDX001" and blake3.blake3(data[:-32]).digest() == data[-32:]
        (npacks,) = struct.unpack_from("<I", data, 8)
        pos = 12
        for _ in range(npacks):
            raw_id, count = struct.unpack_from("<32sI", data, pos)
            pos += 36
            for _ in range(count):
                digest, *loc = struct.unpack_from("<32sIIIB", data, pos)
                pos += 45
                assert packs[raw_id.hex()][digest] == tuple(loc)
                indexed[digest] = (raw_id.hex(), *loc)
        assert pos == len(data) - 32
    engine = Repository(old_root, FIXTURE_PROJECT).refresh_index()
    assert {d: (loc.pack_id, loc.offset, loc.length, loc.raw_length, loc.flags)
            for d, loc in engine.entries.items()} == indexed  # fmt: skip

    for backup_id in _fixture_ids():
        meta = json.loads((base / f"backup_{backup_id}" / "metadata.json").read_bytes())
        assert meta["id"] == backup_id and meta["status"] == "completed"
        frame = (base / f"backup_{backup_id}" / "data" / "manifest.zst").read_bytes()
        plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame)).read()
        assert meta["checksum"] == "blake3:" + blake3.blake3(plain).hexdigest()
        header, *lines = [json.loads(line) for line in plain.splitlines()]
        assert header["nexus_manifest"] == 1
        assert {"source", "hostname", "excludes"} <= set(header)
        paths = [
            line["p"].encode() if "p" in line else base64.b64decode(line["pb"]) for line in lines
        ]
        assert paths == sorted(paths, key=lambda p: p.split(b"/"))
        assert b"bad\xffname.txt" in paths and any("hl" in line for line in lines)
        for line in lines:
            assert line["k"] in ("f", "d", "l") and {"m", "t", "u", "g"} <= set(line)
            if line["k"] == "l":
                assert line["l"] == "hello.txt"
            if line["k"] == "f":
                assert {"s", "h", "ch", "i", "c"} <= set(line)
                assert sum(n for _h, n in line["ch"]) == line["s"]
                assert all(bytes.fromhex(h) in indexed for h, _n in line["ch"])


# --- damage: one line, never a wrong plaintext ---------------------------------------------


def test_damaged_chunk_never_opens_as_another():
    """Every bit of small sealed chunks (zstd and raw), and spread over a large raw one,
    truncations and garbage: DamagedChunk with one line, never bytes that are not the chunk."""
    cases = [b"hello, format 1\n" * 64, bytes(1 << 20), pseudo_random(b"raw chunk", 20_000)]
    for raw in cases:
        digest = hash_bytes(raw)
        for codec in (PLAIN, TOY):
            sealed, flags = codec.seal_blob(digest, raw)
            assert codec.open_blob(digest, sealed, flags, len(raw)) == raw
            bits = 512 if len(sealed) > 1000 else None
            for bad in damaged_forms(sealed, bits=bits):
                try:
                    got = codec.open_blob(digest, bad, flags, len(raw), pack_id="ab" * 32)
                except DamagedChunk as exc:
                    assert one_line(exc).startswith(f"chunk {digest.hex()[:16]} in pack abab")
                else:  # plain zstd ignores a few bits (a trailing byte, reserved flags)
                    assert codec is PLAIN and got == raw
            for other_flags in {0, 1, 7} - {flags}:
                with pytest.raises(DamagedChunk):
                    codec.open_blob(digest, sealed, other_flags, len(raw))
            with pytest.raises(DamagedChunk):
                codec.open_blob(hash_bytes(b"another"), sealed, flags, len(raw))


def test_damaged_pack_header_is_found_by_every_bit():
    store = MemoryStore()
    store.prepare()
    for codec in (PLAIN, TOY):
        writer = PackWriter(store, lambda _p, _l: None, 1 << 24, codec=codec)
        raws = [b"one" * 100, pseudo_random(b"two", 3000), b"three"]
        for raw in raws:
            writer.add(hash_bytes(raw), *_seal_for(codec, raw))
        writer.flush()
        name = writer.pack_names[-1]
        data = store.get(name)
        entries = parse_header(data, len(data), codec)
        # every blob once (under a cipher in an order of their own: packs.PackWriter.SPREAD)
        assert sorted(e[0] for e in entries) == sorted(hash_bytes(r) for r in raws)
        tail_len = 28 + header_length(len(raws), codec)
        body, tail = data[:-tail_len], data[-tail_len:]
        for bad in damaged_forms(tail):
            try:
                got = parse_header(body + bad, len(body + bad), codec)
            except ValueError as exc:  # PackFormatError, DamagedObject: both Damaged
                assert isinstance(exc, Damaged)
                one_line(exc)
            else:
                raise AssertionError(f"a damaged pack header parsed: {got}")


def _seal_for(codec: Codec, raw: bytes) -> tuple[bytes, int, int]:
    stored, flags = codec.seal_blob(hash_bytes(raw), raw)
    return stored, len(raw), flags


def test_damaged_index_file_is_found_by_every_bit():
    repo = fixture_in_memory()
    name = min(o.name for o in repo.store.list("index/"))
    plain = read_index_file(repo.store, PLAIN, name)
    want = list(decode_index(plain))
    for codec in (PLAIN, TOY):
        sealed = codec.seal(Kind.INDEX, plain)
        for bad in damaged_forms(sealed):
            try:
                got = list(decode_index(codec.open(Kind.INDEX, bad, what=f"index file {name}")))
            except DamagedObject as exc:
                one_line(exc)
            except struct.error as exc:  # a truncated record: the index refresh names it
                raise AssertionError("an index file's damage must be DamagedObject") from exc
            else:
                assert got == want, "a damaged index file opened as another"


def test_damaged_manifest_is_refused_once_checked_against_its_checksum():
    """zstd frames of format 1 carry no checksum of their own: a flipped bit inside a literal
    decompresses, and it is the backup's checksum (metadata.json) that refuses it. Every reader
    that decides anything (restore, verify, reclaim, an incremental's parent) checks it."""
    repo = fixture_in_memory()
    meta = repo.read_metadata(_fixture_ids()[0])
    frame = repo.read_manifest(meta.id)
    want = [e.raw for e in mf.iter_entries(frame)]
    name = repo.manifest_name(meta.id)
    for codec in (PLAIN, TOY):
        sealed = codec.seal(Kind.MANIFEST, frame, name.encode())
        for bad in damaged_forms(sealed, bits=1500):
            repo.store.put(name, bad)
            repo.codec = codec
            try:
                _header, entries = validate_restore_point(repo, meta)
            except Damaged as exc:
                one_line(exc)
            else:
                assert [e.raw for e in entries] == want, "a damaged manifest was restorable"
        repo.store.put(name, sealed)
        assert validate_restore_point(repo, meta)[1][0].raw == want[0]


def test_damaged_json_objects_are_one_line_or_refused(old_root):
    """metadata.json, verify.json, project.json and config.json: truncated or garbage, each
    reads as Damaged with one line (settings and verify records as absent); under a cipher,
    every flipped bit too. A plain JSON object of format 1 carries no checksum: a flipped bit
    that still parses is read as written then (the threat model says so)."""
    backup_id = _fixture_ids()[1]
    for codec in (PLAIN, TOY):
        repo = fixture_in_memory(codec)
        prefix = repo.prefix(backup_id)
        originals = {
            n: (PLAIN.open(k, repo.store.get(n)) if codec is TOY else repo.store.get(n), k)
            for n, k in (
                (prefix + "metadata.json", Kind.METADATA),
                (prefix + "verify.json", Kind.VERIFY),
                ("project.json", Kind.SETTINGS),
            )
        }
        for name, (plain, kind) in originals.items():
            sealed = codec.seal(kind, plain, name.encode())
            # plain: truncation and garbage only (see the docstring)
            forms = cut_and_garbage(sealed) if codec is PLAIN else damaged_forms(sealed, bits=400)
            for bad in forms:
                repo.store.put(name, bad)
                if kind is Kind.METADATA:
                    with pytest.raises(Damaged) as caught:
                        repo.read_metadata(backup_id)
                    one_line(caught.value)
                elif kind is Kind.VERIFY:
                    assert repo.read_verify(backup_id) is None
                else:
                    assert repo.settings() == {}
            repo.store.put(name, sealed)
        assert repo.read_metadata(backup_id).id == backup_id and repo.read_verify(backup_id)
    config = (old_root / "backups" / FIXTURE_PROJECT / "config.json").read_bytes()
    for bad in (config[: len(config) // 2], b"\xff\xfe garbage", b""):
        (old_root / "backups" / FIXTURE_PROJECT / "config.json").write_bytes(bad)
        with pytest.raises(Damaged) as caught:
            Repository(old_root, FIXTURE_PROJECT).check_format()
        one_line(caught.value)


def test_a_cipher_binds_each_object_to_its_kind_and_name():
    """Under a cipher an object opens only as the kind and name it was sealed for: metadata
    moved to another backup, or a manifest passed off as metadata, is damage."""
    sealed = TOY.seal(Kind.METADATA, b"{}", b"backup_a/metadata.json")
    assert TOY.open(Kind.METADATA, sealed, b"backup_a/metadata.json") == b"{}"
    for kind, context in (
        (Kind.METADATA, b"backup_b/metadata.json"),
        (Kind.VERIFY, b"backup_a/metadata.json"),
    ):
        with pytest.raises(DamagedObject) as caught:
            TOY.open(kind, sealed, context, what="backup 'b': metadata.json")
        assert one_line(caught.value).startswith("backup 'b': metadata.json: ")
    frame = TOY.seal(Kind.MANIFEST, b"x", b"m")
    with pytest.raises(DamagedManifest):
        TOY.open(Kind.MANIFEST, frame, b"n")


# --- the seam: a repository under another cipher works everywhere, no caller changed ---------

MARK_NAME = "codec-seam-secret-name"
MARK_CONTENT = b"CODEC-SEAM-SECRET-CONTENT"


def _seam_tree(d: Path) -> dict[str, bytes]:
    """Files whose names and contents are easy to find in a repository's bytes: an
    incompressible file (stored raw) with the marker inside, a compressible one."""
    (d / "sub").mkdir(parents=True)
    files = {
        f"{MARK_NAME}.bin": pseudo_random(b"seam a", 40_000) + MARK_CONTENT
        + pseudo_random(b"seam b", 40_000),
        f"sub/{MARK_NAME}-2.txt": MARK_CONTENT * 1000,
    }  # fmt: skip
    for rel, data in files.items():
        (d / rel).write_bytes(data)
    return files


def _repository_bytes(root: Path, project: str) -> dict[str, bytes]:
    """Every object of the project but config.json and the locks (plain by design)."""
    base = root / "backups" / project
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in base.rglob("*")
        if p.is_file() and p.name != "config.json" and "locks" not in p.parts
    }


def _leaks(objects: dict[str, bytes], files: dict[str, bytes]) -> list[str]:
    needles = [MARK_NAME.encode(), MARK_CONTENT, b"nexus_manifest", b'"status"', b"NXIDX001"]
    for data in files.values():
        needles += [blake3.blake3(data).hexdigest().encode(), blake3.blake3(data).digest()]
    return sorted(
        f"{name}: {needle[:24]!r}"
        for name, data in objects.items()
        for needle in needles
        if needle in data
    )


@pytest.mark.parametrize("cipher", ["plain", "toy"])
async def test_every_object_passes_through_the_repository_codec(cipher, tmp_path, monkeypatch):
    """The whole engine on a repository whose codec is `ToyCipher`'s, set on Repository and
    nowhere else: backups, verify, check, restore, delete with reclaim and rebuild-index all
    work, and no object but config.json and the locks shows a name, a content or a hash of
    what was backed up. The same run on a plain repository shows them all (the search is
    real), so no write bypasses the codec and none reads around it."""
    if cipher == "toy":
        init = Repository.__init__

        def with_toy(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.codec = TOY

        monkeypatch.setattr(Repository, "__init__", with_toy)
    root, data = tmp_path / "root", tmp_path / "data"
    files = _seam_tree(data)
    manager = BackupManager(root)
    first = await manager.create(CreateRequest(project_id="seam", data_dir=str(data)))
    (data / "sub" / "new.txt").write_bytes(MARK_CONTENT + b" new")
    files["sub/new.txt"] = MARK_CONTENT + b" new"
    second = await manager.create(CreateRequest(project_id="seam", data_dir=str(data)))
    assert (await manager.verify("seam", second.id)).ok
    assert (await manager.check("seam", read_data=True)).ok

    leaks = _leaks(_repository_bytes(root, "seam"), files)
    assert (leaks == []) == (cipher == "toy"), leaks

    await manager.delete("seam", first.id)
    await manager.rebuild_index("seam")
    out = tmp_path / "out"
    result = await manager.restore(
        RestoreRequest(project_id="seam", backup_id=second.id, restore_dir=str(out))
    )
    assert result.verified
    assert {k.decode(): v[1] for k, v in content_tree(out).items() if v[0] == "f"} == files
    assert (await manager.check("seam", read_data=True)).ok
    assert (_leaks(_repository_bytes(root, "seam"), files) == []) == (cipher == "toy")
