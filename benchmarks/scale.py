"""The engine at scale: many small files (walk + metadata) and one huge file (streaming).

(a) A tree of --files small files (default 200,000): a no-change backup is timed against
    `find DIR -printf '%s %T@\\n'`, which stats every file and does nothing else. Issue 5's
    target: the no-change backup within 2 x find's time.
(b) One --big-gib file (default 4 GiB) of real, partially compressible bytes (not sparse):
    backup and restore, with peak RSS from wait4. Target: under 300 MiB each, i.e. memory
    bounded by chunk and pack sizes, not by the data.
(c) --flat-files small files (default 100,000) in ONE directory: a full backup, then a timed
    full restore into an empty target (and restic's restore of the same tree with --others),
    the restored tree checked identical (count and bytes). Issue 18's target: <= restic.
    With --tree-restore, (a)'s tree is restored too, beside restic's.

Every tree stays until the last section is done (see _REMOVE_AT_END): with (b) that is up to
16 GiB (the file, both tools' repositories, its restore) beside the others.

    python benchmarks/scale.py [--files 200000] [--big-gib 4] [--runs 3] [--json out.json]
                               [--others] [--skip-tree] [--skip-big]
                               [--flat-files 100000] [--skip-flat] [--tree-restore]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
from common import (
    MIB,
    Measure,
    log_tail,
    machine_info,
    machine_line,
    measure,
    median,
    nexus_command,
    tool_versions,
    tree_bytes,
)

GIB = 1 << 30
FIND_RATIO_TARGET = 2.0
RSS_TARGET_MIB = 300.0


def make_tree(root: Path, n: int, seed: int) -> int:
    """n small files (0-1 KiB, distinct), 500 per directory, two levels deep; returns bytes."""
    rng = random.Random(f"{seed}:tree")
    pool = rng.randbytes(1 << 20).hex().encode()  # compressible-ish text, cheap to slice
    total = 0
    for i in range(n):
        d = root / f"d{i // 50_000:02d}" / f"d{(i // 500) % 100:03d}"
        if i % 500 == 0:
            d.mkdir(parents=True, exist_ok=True)
        total += _small_file(d / f"f{i:06d}.txt", rng, pool, i)
    return total


def _small_file(path: Path, rng: random.Random, pool: bytes, i: int) -> int:
    """File number `i` of a tree: its number and 0-1 KiB of the pool; returns its size."""
    off = rng.randrange(len(pool) - 1024)
    data = b"%d\n" % i + pool[off : off + rng.randrange(1024)]
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def make_flat(root: Path, n: int, seed: int) -> int:
    """n small files (0-1 KiB, distinct, make_tree's content) in the one directory root."""
    rng = random.Random(f"{seed}:flat")
    pool = rng.randbytes(1 << 20).hex().encode()
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        total += _small_file(root / f"f{i:06d}.txt", rng, pool, i)
    return total


def same_tree(a: Path, b: Path) -> tuple[bool, int]:
    """Whether the trees under a and b hold the same relative paths with the same bytes
    (regular files, symlinks not followed); and the number of files compared."""

    def listing(root: Path) -> dict[str, Path]:
        out = {}
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                full = Path(dirpath) / name
                out[str(full.relative_to(root))] = full
        return out

    la, lb = listing(a), listing(b)
    if la.keys() != lb.keys():
        return False, len(la)
    return all(filecmp.cmp(la[k], lb[k], shallow=False) for k in la), len(la)


def _run(
    cmd: list[str] | str,
    log: Path,
    what: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Measure:
    m = measure(cmd, log=log, env=env, cwd=cwd)
    ok = m.rc in (0, 3)
    print(
        f"{what:32} {m.wall:8.2f}s cpu {m.cpu:8.2f}s rss {m.rss_mib:7.1f} MiB rc={m.rc}",
        file=sys.stderr,
    )
    if not ok:
        raise SystemExit(f"{what} failed (rc={m.rc}):\n{log_tail(log)}")
    return m


def _med(ms: list[Measure]) -> dict[str, float | None]:
    return {k: median(getattr(m, k) for m in ms) for k in ("wall", "cpu", "rss_mib")}


def bench_tree(work: Path, args: argparse.Namespace, nx: list[str]) -> dict[str, Any]:
    data, log = work / "tree", work / "tree.log"
    t0 = time.perf_counter()
    nbytes = make_tree(data, args.files, args.seed)
    print(
        f"tree: {args.files} files, {nbytes / MIB:.1f} MiB in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    find = f"find {data} -printf '%s %T@\\n' > /dev/null"
    _run(find, log, "find (warm-up)")
    finds = [_run(find, log, "find -printf (stat all)") for _ in range(args.runs)]
    root = ["--root", str(work / "nexus-tree")]
    full = _run(
        [*nx, *root, "create", "tree", str(data), "--type", "full"], log, "nexus full backup"
    )
    nochange = [
        _run(
            [*nx, *root, "create", "tree", str(data), "--type", "incremental"],
            log,
            "nexus no-change backup",
        )
        for _ in range(args.runs)
    ]
    out: dict[str, Any] = {
        "files": args.files,
        "mib": round(nbytes / MIB, 1),
        "find": _med(finds),
        "nexus_full": _med([full]),
        "nexus_nochange": _med(nochange),
        "repo_mib": round(tree_bytes(work / "nexus-tree") / MIB, 1),
    }
    if args.others and shutil.which("restic"):
        env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "restic-cache")}
        base = ["restic", "-r", str(work / "restic-tree"), "--quiet"]
        _run([*base, "init"], log, "restic init", env)
        out["restic_full"] = _med([_run([*base, "backup", str(data)], log, "restic full", env)])
        out["restic_nochange"] = _med(
            [
                _run([*base, "backup", str(data)], log, "restic no-change", env)
                for _ in range(args.runs)
            ]
        )
    f, n = out["find"]["wall"], out["nexus_nochange"]["wall"]
    out["ratio_to_find"] = round(n / f, 2) if f else None
    out["ok"] = bool(f) and n <= FIND_RATIO_TARGET * f
    if args.tree_restore:
        out["restore"] = bench_restores(work, args, nx, "tree-r", data)
    _remove_later(data, work / "nexus-tree", work / "restic-tree")
    return out


def bench_big(work: Path, args: argparse.Namespace, nx: list[str]) -> dict[str, Any]:
    data, log = work / "big", work / "big.log"
    size = int(args.big_gib * GIB)
    t0 = time.perf_counter()
    corpus.write_random(
        data / "huge.ckpt", random.Random(f"{args.seed}:big"), size, checkpoint=True, seed=args.seed
    )
    os.sync()
    print(f"big file: {size / GIB:.2f} GiB in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    root = ["--root", str(work / "nexus-big")]
    target = work / "big-restore"
    backup = _run(
        [*nx, *root, "create", "big", str(data), "--type", "full"], log, "nexus backup (big file)"
    )
    target.mkdir()
    restore = _run(
        [*nx, *root, "restore", "big", "latest", str(target), "--no-checkpoint"],
        log,
        "nexus restore (big file)",
    )
    same = filecmp.cmp(data / "huge.ckpt", target / "huge.ckpt", shallow=False)
    out: dict[str, Any] = {
        "gib": args.big_gib,
        "backup": _med([backup]),
        "restore": _med([restore]),
        "backup_mib_s": round(size / MIB / backup.wall, 1),
        "restore_mib_s": round(size / MIB / restore.wall, 1),
        "repo_mib": round(tree_bytes(work / "nexus-big") / MIB, 1),
        "restored_identical": same,
    }
    if args.others and shutil.which("restic"):
        env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "restic-cache")}
        base = ["restic", "-r", str(work / "restic-big"), "--quiet", "--compression", "auto"]
        _run([*base, "init"], log, "restic init", env)
        out["restic_backup"] = _med(
            [_run([*base, "backup", str(data)], log, "restic backup (big file)", env)]
        )
        shutil.rmtree(target)
        target.mkdir()
        out["restic_restore"] = _med(
            [
                _run(
                    [*base, "restore", "latest", "--target", str(target)],
                    log,
                    "restic restore (big file)",
                    env,
                )
            ]
        )
    out["ok"] = same and max(backup.rss_mib, restore.rss_mib) < RSS_TARGET_MIB
    _remove_later(data, target, work / "nexus-big", work / "restic-big")
    return out


def _restic_restored(target: Path, data: Path) -> Path:
    """restic restores the absolute path of what it backed up beneath its target."""
    return target / data.relative_to(data.anchor)


#: Trees the sections made, removed when the last one is done (why: compare.remove_runs).
_REMOVE_AT_END: list[Path] = []


def _remove_later(*paths: Path) -> None:
    _REMOVE_AT_END.extend(paths)


def _fresh(targets: list[Path], stem: Path) -> Path:
    """A new empty target beside the earlier ones (see _REMOVE_AT_END)."""
    target = stem.with_name(f"{stem.name}-{len(targets)}")
    target.mkdir()
    targets.append(target)
    return target


def bench_restores(
    work: Path, args: argparse.Namespace, nx: list[str], name: str, data: Path
) -> dict[str, Any]:
    """A full backup of data, then --runs timed full restores into an empty target (nexus,
    and restic with --others), each checked identical to data."""
    log = work / f"{name}.log"
    root = ["--root", str(work / f"nexus-{name}")]
    stem = work / f"{name}-restore"
    full = _run([*nx, *root, "create", name, str(data), "--type", "full"], log, "nexus full backup")
    restores, identical, count = [], True, 0
    targets: list[Path] = []
    for _ in range(args.runs):
        target = _fresh(targets, stem)
        restores.append(
            _run(
                [*nx, *root, "restore", name, "latest", str(target), "--no-checkpoint"],
                log,
                "nexus full restore",
            )
        )
        ok, count = same_tree(data, target)
        identical = identical and ok
    out: dict[str, Any] = {
        "nexus_full": _med([full]),
        "nexus_restore": _med(restores),
        "restored_identical": identical,
        "restored_files": count,
    }
    if args.others and shutil.which("restic"):
        env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "restic-cache")}
        base = ["restic", "-r", str(work / f"restic-{name}"), "--quiet"]
        _run([*base, "init"], log, "restic init", env)
        out["restic_full"] = _med([_run([*base, "backup", str(data)], log, "restic full", env)])
        rs, r_ok = [], True
        for _ in range(args.runs):
            target = _fresh(targets, stem)
            rs.append(
                _run(
                    [*base, "restore", "latest", "--target", str(target)],
                    log,
                    "restic full restore",
                    env,
                )
            )
            r_ok = r_ok and same_tree(data, _restic_restored(target, data))[0]
        out["restic_restore"] = _med(rs)
        out["restic_identical"] = r_ok
        n, r = out["nexus_restore"]["wall"], out["restic_restore"]["wall"]
        out["ratio_to_restic"] = round(n / r, 2) if r else None
    _remove_later(*targets, work / f"nexus-{name}", work / f"restic-{name}")
    return out


def bench_flat(work: Path, args: argparse.Namespace, nx: list[str]) -> dict[str, Any]:
    data = work / "flat"
    t0 = time.perf_counter()
    nbytes = make_flat(data, args.flat_files, args.seed)
    print(
        f"flat: {args.flat_files} files in one directory, {nbytes / MIB:.1f} MiB "
        f"in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    out = {"files": args.flat_files, "mib": round(nbytes / MIB, 1)}
    out |= bench_restores(work, args, nx, "flat", data)
    ratio = out.get("ratio_to_restic")
    out["ok"] = out["restored_identical"] and (ratio is None or ratio <= 1.0)
    _remove_later(data)
    return out


def _restore_rows(lines: list[str], t: dict[str, Any]) -> None:
    rows = [("nexus-backup full restore", t["nexus_restore"])]
    if "restic_restore" in t:
        rows.append(("restic full restore", t["restic_restore"]))
    lines += [
        f"  {name:38} {m['wall']:8.2f} {m['cpu']:8.2f} {m['rss_mib']:9.1f}" for name, m in rows
    ]
    line = f"  restored identical: {t['restored_identical']} ({t['restored_files']:,} files)"
    if "restic_restore" in t:
        line += f"; restic's identical: {t['restic_identical']}"
        line += f"; restore / restic = {t['ratio_to_restic']}"
    lines.append(line)


def render(report: dict[str, Any]) -> str:
    lines = [
        f"nexus-backup scale benchmark, {report['runs']} run(s), median quoted",
        f"machine: {machine_line(report['machine'])}",
        "versions: " + "; ".join(v for v in report["versions"].values() if v),
    ]
    t = report.get("tree")
    if t:
        lines += [
            "",
            f"(a) {t['files']:,} small files ({t['mib']} MiB)      wall s    cpu s  peak MiB",
        ]
        rows = [
            ("find -printf (stat every file)", t["find"]),
            ("nexus-backup full backup", t["nexus_full"]),
            ("nexus-backup no-change backup", t["nexus_nochange"]),
        ]
        if "restic_full" in t:
            rows += [
                ("restic full backup", t["restic_full"]),
                ("restic no-change backup", t["restic_nochange"]),
            ]
        lines += [
            f"  {name:38} {m['wall']:8.2f} {m['cpu']:8.2f} {m['rss_mib']:9.1f}" for name, m in rows
        ]
        lines.append(
            f"  no-change backup / find = {t['ratio_to_find']} "
            f"(target <= {FIND_RATIO_TARGET}): {'PASS' if t['ok'] else 'MISS'}"
        )
        if "restore" in t:
            _restore_rows(lines, t["restore"])
    b = report.get("big")
    if b:
        lines += [
            "",
            f"(b) one {b['gib']} GiB file                         wall s    cpu s  "
            "peak MiB   MiB/s",
        ]
        rows = [
            ("nexus-backup backup", b["backup"], b["backup_mib_s"]),
            ("nexus-backup restore", b["restore"], b["restore_mib_s"]),
        ]
        for key, name in (("restic_backup", "restic backup"), ("restic_restore", "restic restore")):
            if key in b:
                rows.append((name, b[key], round(b["gib"] * 1024 / b[key]["wall"], 1)))
        lines += [
            f"  {name:38} {m['wall']:8.2f} {m['cpu']:8.2f} {m['rss_mib']:9.1f} {rate:7.1f}"
            for name, m, rate in rows
        ]
        lines.append(
            f"  repo {b['repo_mib']} MiB; restored identical: {b['restored_identical']}; "
            f"peak RSS < {RSS_TARGET_MIB:.0f} MiB: {'PASS' if b['ok'] else 'MISS'}"
        )
    f = report.get("flat")
    if f:
        lines += [
            "",
            f"(c) {f['files']:,} small files in one directory ({f['mib']} MiB)"
            "   wall s    cpu s  peak MiB",
            f"  {'nexus-backup full backup':38} {f['nexus_full']['wall']:8.2f} "
            f"{f['nexus_full']['cpu']:8.2f} {f['nexus_full']['rss_mib']:9.1f}",
        ]
        if "restic_full" in f:
            m = f["restic_full"]
            lines.append(
                f"  {'restic full backup':38} {m['wall']:8.2f} {m['cpu']:8.2f} {m['rss_mib']:9.1f}"
            )
        _restore_rows(lines, f)
        lines.append(f"  restore <= restic: {'PASS' if f['ok'] else 'MISS'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=200_000, help="small files in tree (a)")
    ap.add_argument("--big-gib", type=float, default=4.0, help="size of the big file (b)")
    ap.add_argument("--runs", type=int, default=3, help="repeats of the timed no-change/find")
    ap.add_argument("--skip-tree", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--flat-files", type=int, default=100_000, help="files in (c)'s directory")
    ap.add_argument("--skip-flat", action="store_true")
    ap.add_argument(
        "--tree-restore", action="store_true", help="also time full restores of tree (a)"
    )
    ap.add_argument("--others", action="store_true", help="also time restic, for context")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", help="default: a temp dir, removed afterwards")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--nexus", help="command for nexus-backup (default: the venv's script)")
    args = ap.parse_args(argv)
    nx = nexus_command(args.nexus)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nexus-scale-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "runs": args.runs,
        "machine": machine_info(work),
        "versions": tool_versions(["nexus", "restic"] if args.others else ["nexus"]),
    }
    try:
        if not args.skip_tree:
            report["tree"] = bench_tree(work, args, nx)
        if not args.skip_big:
            report["big"] = bench_big(work, args, nx)
        if not args.skip_flat:
            report["flat"] = bench_flat(work, args, nx)
    finally:
        if not args.keep:
            for p in _REMOVE_AT_END:
                shutil.rmtree(p, ignore_errors=True)
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)
    report["table"] = render(report)
    print(report["table"])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
