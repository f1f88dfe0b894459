"""Deterministic benchmark corpus: a realistic project tree and a "day of work" mutation.

The same seed and scale always give the same bytes, names, modes and mtimes, so every tool in
a comparison (and every run) backs up exactly the same data. Bytes come from seeded
``random.Random`` (never ``os.urandom``); text comes from a pre-built pool of lines so a
half-GiB corpus is written in seconds.

Usage::

    python benchmarks/corpus.py generate DIR [--scale 1.0] [--seed 42]
    python benchmarks/corpus.py mutate DIR --round N [--seed 42]
    python benchmarks/corpus.py digest DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIB = 1 << 20
#: Fixed mtime of generated files (2026-01-01 UTC); mutation round N sets base + N days, so
#: mtime-based change detection sees every edit, and two generations are metadata-identical.
BASE_MTIME = 1_767_225_600
DAY = 86_400
#: A file that mutation never touches: the target of the single-file-restore benchmark.
SINGLE_FILE = "assets/blob_0000.bin"

# Sizes at scale 1.0 (about 0.5 GiB in total).
N_SOURCES = 5000
BINARY_BYTES = 200 * MIB
N_BINARIES = 40
LOG_BYTES = 120 * MIB
N_LOGS = 4
CHECKPOINT_BYTES = 150 * MIB

_WORDS = (  # noqa: SIM905 - a word list reads best as text
    "alpha beta gamma delta epoch batch layer weight tensor loss grad step model cache index "
    "chunk pack store repo backup restore verify manifest config reader writer buffer stream "
    "queue worker thread lock event handler request response session token user project data "
    "value result error status count total offset length size path name node tree entry item"
).split()
_TYPES = ("int", "str", "bytes", "float", "bool", "Path", "list[str]", "dict[str, int]")
_LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARNING", "ERROR")
_EXTS = (".py", ".py", ".py", ".ts", ".js", ".md", ".json", ".c", ".h", ".yaml", ".txt")
_UNICODE_FILES = (
    "docs/设计/架构说明.md",
    "données/résumé final.txt",
    "données/naïve café.csv",
    "assets/ímágenes/logo ✓.svg",
    "notes/Ünïcödé — notes 🚀.md",
    "src/日本語/ファイル.py",
)
_EMPTY_DIRS = ("build/empty", "cache/tmp", "data/raw/unused", "src/pkg_empty/sub")


@dataclass
class Summary:
    """What a generate/mutate call did (printed as JSON by the command line)."""

    files: int = 0
    bytes: int = 0
    symlinks: int = 0
    empty_dirs: int = 0
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)

    def add(self, n: int) -> None:
        self.files += 1
        self.bytes += n


def _ident(rng: random.Random) -> str:
    return "_".join(rng.choices(_WORDS, k=rng.randint(1, 3)))


def _line_pool(seed: int, n: int = 40_000) -> list[str]:
    """Distinct code-like lines: compressible like real source, but every file is a new mix."""
    rng = random.Random(f"{seed}:lines")
    templates = (
        lambda: (
            f"def {_ident(rng)}({_ident(rng)}: {rng.choice(_TYPES)}, "
            f"{_ident(rng)}: int = {rng.randint(0, 999)}) -> {rng.choice(_TYPES)}:"
        ),
        lambda: f"    {_ident(rng)} = {_ident(rng)}({_ident(rng)}, {rng.randint(0, 99999)})",
        lambda: f"    # {' '.join(rng.choices(_WORDS, k=rng.randint(3, 12)))}",
        lambda: f"import {_ident(rng)}.{_ident(rng)}",
        lambda: f"        return {_ident(rng)}.{_ident(rng)} + {rng.random():.6f}",
        lambda: f"    if {_ident(rng)} is not None and {_ident(rng)} > {rng.randint(0, 4096)}:",
        lambda: f"class {_ident(rng).title().replace('_', '')}({rng.choice(_TYPES)}):",
        lambda: f'        raise ValueError("{" ".join(rng.choices(_WORDS, k=5))}")',
        lambda: "",
        lambda: f"        self.{_ident(rng)}[{rng.randint(0, 63)}] = {_ident(rng)}",
    )
    return [rng.choice(templates)() for _ in range(n)]


def _log_pool(seed: int, n: int = 20_000) -> list[str]:
    rng = random.Random(f"{seed}:logs")
    return [
        f"{rng.choice(_LEVELS):7} [{rng.choice(_WORDS)}.{rng.choice(_WORDS)}] "
        f"{' '.join(rng.choices(_WORDS, k=rng.randint(2, 9)))} "
        f"id={rng.getrandbits(32):08x} latency_ms={rng.randint(0, 2000)}"
        for _ in range(n)
    ]


def _source_text(rng: random.Random, pool: list[str], lines: int | None = None) -> bytes:
    n = lines if lines is not None else max(1, min(4000, int(rng.lognormvariate(4.5, 1.0))))
    return ("\n".join(rng.choices(pool, k=n)) + "\n").encode()


def _log_text(rng: random.Random, pool: list[str], nbytes: int, start: int) -> bytes:
    """About nbytes of log lines with increasing timestamps from `start` (epoch seconds)."""
    out: list[str] = []
    size, t_ms = 0, start * 1000
    while size < nbytes:
        batch = rng.choices(pool, k=2000)
        sec = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_ms // 1000))
        for msg in batch:
            t_ms += 7
            if t_ms % 1000 < 7:
                sec = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_ms // 1000))
            line = f"{sec}.{t_ms % 1000:03d}Z {msg}\n"
            out.append(line)
            size += len(line)
    return "".join(out).encode()


_LOW_ENTROPY = bytes(b & 0x0F for b in range(256))
_PIECE = 4096
_POOL_BYTES = 64 * MIB
_POOLS: dict[int, tuple[bytes, bytes]] = {}


def _pools(seed: int) -> tuple[bytes, bytes]:
    """A 64 MiB random pool and its 4-bit (half-entropy) image, built once per seed."""
    if seed not in _POOLS:
        rng = random.Random(f"{seed}:pool")
        rnd = b"".join(rng.randbytes(4 * MIB) for _ in range(_POOL_BYTES // (4 * MIB)))
        _POOLS[seed] = (rnd, rnd.translate(_LOW_ENTROPY))
    return _POOLS[seed]


class Noise:
    """Seeded pseudo-random bytes at memory speed (GiB in seconds; MT19937 alone is ~4x slower).

    The stream is 4 KiB pieces, each an 8-byte salt unique to this stream and piece followed
    by a slice of a shared random pool at a random offset, so no two chunks of a few KiB or
    more are ever equal (nothing to deduplicate) and nothing repeats within a compressor's
    window. With `low_entropy` a fraction of the pieces comes from the pool's 4-bit image:
    0.5 makes float-like checkpoint bytes that zstd shrinks by about a quarter.
    """

    def __init__(self, rng: random.Random, seed: int = 42, low_entropy: float = 0.0) -> None:
        self.rng = rng
        self.pools = _pools(seed)
        self.low = low_entropy
        self.salt = rng.getrandbits(62)

    def read(self, n: int) -> bytes:
        rng, (rnd, lo), parts, size = self.rng, self.pools, [], 0
        limit = len(rnd) - _PIECE
        while size < n:
            pool = lo if self.low and rng.random() < self.low else rnd
            off = rng.randrange(limit)
            self.salt += 1
            parts.append(self.salt.to_bytes(8, "little"))
            parts.append(pool[off : off + _PIECE - 8])
            size += _PIECE
        return b"".join(parts)[:n]


def write_random(
    path: Path, rng: random.Random, nbytes: int, *, checkpoint: bool = False, seed: int = 42
) -> None:
    """Stream nbytes of seeded noise in 4 MiB writes (memory stays flat for any size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = Noise(rng, seed, 0.5 if checkpoint else 0.0)
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            n = min(left, 4 * MIB)
            f.write(noise.read(n))
            left -= n


def _write(root: Path, rel: str, data: bytes, summary: Summary, mode: int = 0o644) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.chmod(p, mode)
    summary.add(len(data))


def _scaled(n: int, scale: float, minimum: int) -> int:
    return max(minimum, round(n * scale))


def generate(root: str | os.PathLike[str], scale: float = 1.0, seed: int = 42) -> Summary:
    """Write the corpus into `root` (created; must be empty or absent)."""
    t0 = time.perf_counter()
    dest = Path(root)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise SystemExit(f"corpus: {dest} is not empty")
    s = Summary()
    rng = random.Random(f"{seed}:generate")
    pool = _line_pool(seed)

    # Thousands of small sources in a package tree of realistic depth.
    n_src = _scaled(N_SOURCES, scale, 20)
    n_pkgs = max(2, n_src // 60)
    for i in range(n_src):
        pkg = rng.randrange(n_pkgs)
        sub = f"/{_ident(rng)}" if rng.random() < 0.4 else ""
        rel = f"src/pkg_{pkg:03d}{sub}/{_ident(rng)}_{i:05d}{rng.choice(_EXTS)}"
        _write(dest, rel, _source_text(rng, pool), s)
    _write(dest, "README.md", _source_text(rng, pool, 80), s)
    _write(dest, ".gitignore", b"build/\ncache/\n*.pyc\n", s)
    _write(dest, "scripts/run.sh", b'#!/bin/sh\nexec python -m app "$@"\n', s, 0o755)
    for rel in _UNICODE_FILES:
        _write(dest, rel, _source_text(rng, pool, 40), s)

    # Incompressible binaries (a few hundred MiB at scale 1).
    n_bin = _scaled(N_BINARIES, scale, 2)
    weights = [rng.lognormvariate(0, 0.8) for _ in range(n_bin)]
    total = max(64 * 1024 * n_bin, int(BINARY_BYTES * scale))
    for i, w in enumerate(weights):
        size = max(4096, int(total * w / sum(weights)))
        name = SINGLE_FILE if i == 0 else f"assets/{_ident(rng)}/blob_{i:04d}.bin"
        write_random(dest / name, rng, size, seed=seed)
        s.add(size)

    # Large compressible logs.
    n_logs = _scaled(N_LOGS, scale, 1)
    lpool = _log_pool(seed)
    for i in range(n_logs):
        data = _log_text(rng, lpool, int(LOG_BYTES * scale / n_logs), BASE_MTIME - 30 * DAY)
        _write(dest, f"logs/service_{i}.log", data, s)

    # One big, partially compressible checkpoint.
    size = max(MIB, int(CHECKPOINT_BYTES * scale))
    write_random(dest / "checkpoints/model.ckpt", rng, size, checkpoint=True, seed=seed)
    s.add(size)

    # Symlinks (file, directory, relative across the tree) and empty directories.
    links = {
        "latest.ckpt": "checkpoints/model.ckpt",
        "src/current": "pkg_000",
        "docs/readme_link.md": "../README.md",
        "logs/current.log": "service_0.log",
    }
    for rel, target in links.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, dest / rel)
        s.symlinks += 1
    for rel in _EMPTY_DIRS:
        (dest / rel).mkdir(parents=True, exist_ok=True)
        s.empty_dirs += 1

    _set_mtimes(dest, BASE_MTIME)
    s.seconds = round(time.perf_counter() - t0, 3)
    return s


def _set_mtimes(root: Path, mtime: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)


def _regular_files(root: Path, under: str) -> list[str]:
    """Sorted relative paths of regular files below root/under (symlinks skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root / under):
        dirnames.sort()
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                out.append(os.path.relpath(p, root))
    return sorted(out)


def mutate(root: str | os.PathLike[str], round_no: int, seed: int = 42) -> Summary:
    """One day of work, deterministic for (seed, round_no, current tree).

    About 1% of sources edited, every log grown by ~2%, 1 MiB rewritten in the middle of the
    checkpoint, a few sources added and a few removed, one new binary.
    """
    t0 = time.perf_counter()
    dest = Path(root)
    s = Summary()
    rng = random.Random(f"{seed}:mutate:{round_no}")
    pool = _line_pool(seed)
    mtime = BASE_MTIME + round_no * DAY
    touched: list[Path] = []

    sources = _regular_files(dest, "src")
    n_edit = max(1, len(sources) // 100)
    for rel in rng.sample(sources, n_edit):
        p = dest / rel
        lines = p.read_bytes().decode().split("\n")
        for _ in range(rng.randint(1, 5)):
            pos = rng.randrange(len(lines))
            if rng.random() < 0.5:
                lines[pos] = rng.choice(pool)
            else:
                lines[pos:pos] = rng.choices(pool, k=rng.randint(1, 20))
        data = "\n".join(lines).encode()
        p.write_bytes(data)
        touched.append(p)
        s.add(len(data))
        s.changed.append(rel)

    for rel in _regular_files(dest, "logs"):
        p = dest / rel
        grow = max(4096, p.stat().st_size // 50)
        data = _log_text(rng, _log_pool(seed), grow, mtime)
        with open(p, "ab") as f:
            f.write(data)
        touched.append(p)
        s.add(len(data))
        s.changed.append(rel)

    ckpt = dest / "checkpoints/model.ckpt"
    size = ckpt.stat().st_size
    n = min(MIB, size // 4)
    with open(ckpt, "r+b") as f:
        f.seek(size // 2 - n // 2 + rng.randrange(4096))
        f.write(Noise(rng, seed, 0.5).read(n))
    touched.append(ckpt)
    s.add(n)
    s.changed.append("checkpoints/model.ckpt")

    n_add = max(2, len(sources) // 1000)
    for i in range(n_add):
        rel = f"src/pkg_new/{_ident(rng)}_r{round_no:03d}_{i:03d}.py"
        _write(dest, rel, _source_text(rng, pool), s)
        touched.append(dest / rel)
        s.changed.append(rel)
    rel = f"assets/new/blob_r{round_no:03d}.bin"
    write_random(dest / rel, rng, 256 * 1024, seed=seed)
    touched.append(dest / rel)
    s.add(256 * 1024)
    s.changed.append(rel)

    for rel in rng.sample(sources, max(1, n_add - 1)):
        (dest / rel).unlink()
        s.changed.append(f"-{rel}")

    for p in touched:
        os.utime(p, (mtime, mtime))
    s.seconds = round(time.perf_counter() - t0, 3)
    return s


def digest(root: str | os.PathLike[str]) -> str:
    """One hash of names, types, modes, contents and link targets (not times, not owners).

    Used to check that a restore gave back exactly the corpus.
    """
    h = hashlib.blake2b(digest_size=20)
    base = Path(root)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, base)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                h.update(f"L {rel} {os.readlink(p)}\n".encode())
            elif stat.S_ISDIR(st.st_mode):
                h.update(f"D {rel}\n".encode())
            else:
                h.update(f"F {rel} {st.st_mode & 0o777:o} {st.st_size}\n".encode())
                with open(p, "rb") as f:
                    while chunk := f.read(4 * MIB):
                        h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write a new corpus")
    g.add_argument("dir")
    g.add_argument("--scale", type=float, default=1.0, help="1.0 = about 0.5 GiB")
    g.add_argument("--seed", type=int, default=42)
    m = sub.add_parser("mutate", help="apply one day of work")
    m.add_argument("dir")
    m.add_argument("--round", type=int, required=True)
    m.add_argument("--seed", type=int, default=42)
    d = sub.add_parser("digest", help="print the tree's content hash")
    d.add_argument("dir")
    a = ap.parse_args(argv)
    if a.cmd == "digest":
        print(digest(a.dir))
        return 0
    if a.cmd == "generate":
        result = generate(a.dir, a.scale, a.seed)
    else:
        result = mutate(a.dir, a.round, a.seed)
    out = asdict(result)
    out["changed"] = len(result.changed)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
