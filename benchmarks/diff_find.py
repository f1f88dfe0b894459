"""Comparing and searching backups (issue 17): `diff` of two backups of 200,000 files, and
`find` over 1,000 backups of 10,000 files, each measured in a child process (wall time and
peak RSS from the OS, benchmarks/common.measure), median of N runs.

    .venv/bin/python benchmarks/diff_find.py [--files 200000] [--backups 1000]
        [--find-files 10000] [--runs 3] [--json out.json]

The repositories are built synthetically through the core's own writers (Repository,
ManifestWriter, BackupMetadata with the manifest's checksum): real manifests of real entries,
without files on disk or chunks stored, since neither command reads a chunk. The second
backup of the diff changes 1 % of the files' content, removes 0.5 % and adds 0.5 %; of the
1,000 find backups each rewrites 1 % of the files, so the file searched for changes every
few backups and its runs collapse.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import machine_info, machine_line, measure, median  # noqa: E402

from core.models import BackupMetadata, BackupStatus, BackupType  # noqa: E402
from core.repo import manifest as mf  # noqa: E402
from core.repo.repository import Repository  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _hex(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _path(i: int) -> bytes:
    return f"dir{i // 1000:04}/sub{i // 100 % 10}/file-{i:07}.dat".encode()


def _entries(files: dict[int, tuple[str, int]]) -> list[mf.Entry]:
    """The entries of a tree holding `files` (index -> (hash, size)), with its directories,
    in the manifest's order."""
    out: dict[bytes, mf.Entry] = {}
    for i, (digest, size) in files.items():
        path = _path(i)
        parts = path.split(b"/")
        for n in range(1, len(parts)):
            d = b"/".join(parts[:n])
            if d not in out:
                out[d] = mf.Entry(path=d, kind=mf.DIR, mode=0o40755, mtime_ns=1)
        out[path] = mf.Entry(
            path=path,
            kind=mf.FILE,
            mode=0o100644,
            mtime_ns=1_700_000_000_000_000_000 + i,
            size=size,
            uid=1000,
            gid=1000,
            ino=i + 10,
            ctime_ns=1_700_000_000_000_000_000 + i,
            hash=digest,
            chunks=[(digest, size)],
        )
    return [out[k] for k in sorted(out, key=mf.order_key)]


def write_backup(
    repo: Repository, backup_id: str, when: datetime, lines: list[bytes], first: bytes, last: bytes
) -> None:
    """A completed backup whose manifest holds `lines` (encoded entries, in order)."""
    writer = mf.ManifestWriter({"backup_id": backup_id, "project_id": repo.project_id})
    writer.add_lines(first, last, [b"".join(lines)])
    frame, checksum = writer.finish()
    meta = BackupMetadata(
        id=backup_id,
        project_id=repo.project_id,
        type=BackupType.FULL,
        status=BackupStatus.COMPLETED,
        created_at=when,
        completed_at=when,
        checksum=checksum,
        files_count=len(lines),
    )
    repo.write_manifest(backup_id, frame)
    repo.write_metadata(meta)


class Tree:
    """A synthetic tree's encoded manifest lines, kept in order; a file changed re-encodes
    only its own line."""

    def __init__(self, files: dict[int, tuple[str, int]]) -> None:
        self.entries = {e.path: e for e in _entries(files)}
        self.lines = {p: mf.encode_entry(e) for p, e in self.entries.items()}
        self.order = sorted(self.lines, key=mf.order_key)

    def set(self, i: int, digest: str, size: int) -> None:
        e = self.entries[_path(i)]
        e.hash, e.size, e.chunks = digest, size, [(digest, size)]
        self.lines[e.path] = mf.encode_entry(e)

    def write(self, repo: Repository, backup_id: str, when: datetime) -> None:
        lines = [self.lines[p] for p in self.order]
        write_backup(repo, backup_id, when, lines, self.order[0], self.order[-1])


def build_diff(root: Path, n: int, rng: random.Random) -> tuple[str, str]:
    repo = Repository(root, "diff")
    repo.init()
    files = {i: (_hex(rng), rng.randrange(100, 100_000)) for i in range(n)}
    a, b = "20260101-000000-aaaaaa", "20260102-000000-bbbbbb"
    Tree(files).write(repo, a, T0)
    for i in rng.sample(range(n), n // 100):
        files[i] = (_hex(rng), files[i][1])
    for i in rng.sample(range(n), n // 200):
        files.pop(i, None)
    for i in range(n, n + n // 200):
        files[i] = (_hex(rng), 1234)
    Tree(files).write(repo, b, T0 + timedelta(days=1))
    return a, b


def build_find(root: Path, backups: int, n: int, rng: random.Random) -> None:
    repo = Repository(root, "find")
    repo.init()
    tree = Tree({i: (_hex(rng), rng.randrange(100, 100_000)) for i in range(n)})
    for k in range(backups):
        for i in rng.sample(range(n), max(1, n // 100)):
            tree.set(i, _hex(rng), rng.randrange(100, 100_000))
        if k % 7 == 0:
            tree.set(42, _hex(rng), k + 1)  # the file searched: a new version every 7 backups
        tree.write(repo, f"20260101-{k:06}-{k:06x}", T0 + timedelta(hours=k))


DIFF_CHILD = """
import sys
from core.manager import BackupManager
m = BackupManager(sys.argv[1])
run = m.diff_run_blocking("diff", sys.argv[2], sys.argv[3])
n = sum(1 for _ in run.changes)
print(n, run.totals.model_dump_json())
"""

FIND_CHILD = """
import sys
from core.manager import BackupManager
r = BackupManager(sys.argv[1]).find_blocking("find", sys.argv[2])
print(r.backups_searched, len(r.hits), [len(h.versions) for h in r.hits][:3])
"""


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(17)
    results: dict = {"machine": machine_info(), "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="nexus-diff-find-") as tmp:
        root = Path(tmp) / "root"
        log = Path(tmp) / "log.txt"
        t = time.perf_counter()
        a, b = build_diff(root, args.files, rng)
        results["diff_build_seconds"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        build_find(root, args.backups, args.find_files, rng)
        results["find_build_seconds"] = round(time.perf_counter() - t, 2)
        py = [sys.executable, "-c"]
        diffs = [measure([*py, DIFF_CHILD, str(root), a, b], log=log) for _ in range(args.runs)]
        finds = [
            measure([*py, FIND_CHILD, str(root), "file-0000042.dat"], log=log)
            for _ in range(args.runs)
        ]
        globs = [
            measure([*py, FIND_CHILD, str(root), "*42.dat"], log=log) for _ in range(args.runs)
        ]
        for name, ms in (("diff", diffs), ("find", finds), ("find_glob", globs)):
            assert all(m.rc == 0 for m in ms), log.read_text()[-2000:]
            results[name] = {
                "wall_seconds": median(m.wall for m in ms),
                "rss_mib": median(m.rss_mib for m in ms),
                "all": [m.as_dict() for m in ms],
            }
        results["output"] = log.read_text().strip().splitlines()[-4:]
    results["files"], results["backups"], results["find_files"] = (
        args.files,
        args.backups,
        args.find_files,
    )
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200_000, help="files in each diffed backup")
    ap.add_argument("--backups", type=int, default=1000, help="backups find searches")
    ap.add_argument("--find-files", type=int, default=10_000, help="files in each of them")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    results = run(args)
    print(machine_line(results["machine"]))
    for name, target in (("diff", 2.0), ("find", 5.0), ("find_glob", 5.0)):
        r = results[name]
        print(
            f"{name:10} {r['wall_seconds']:7.2f} s  {r['rss_mib']:7.1f} MiB  (target < {target} s)"
        )
    built = results["diff_build_seconds"], results["find_build_seconds"]
    print(f"built in {built[0]} s (diff), {built[1]} s (find)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
