"""Interleaved A/B of two source trees of nexus-backup on one step, for a change too small
for compare.py's noise: each round runs the step once with each tree, in turn, on the same
data, and the median wall time, CPU time and minor page faults of each tree are quoted.

    python benchmarks/ab.py --a /tmp/old --b . [--step backup|restore] [--rounds 8]
                            [--encrypted] [--workdir /dev/shm/ab]

A tree is a checkout (`git worktree add /tmp/old REV`, or `git archive REV | tar -x`); both
run with this venv's Python. The corpus is compare.py's (benchmarks/corpus.py, scale 1.0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus

PASSWORD = "benchmark password"


def _run(tree: Path, args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """One step as a child process: wall seconds, CPU seconds (user + sys), minor faults."""
    os.sync()
    cmd = [sys.executable, "-c", "from cli.main import run; run()", *args]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env, "PYTHONPATH": str(tree)}, stdout=subprocess.DEVNULL
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{tree}: {' '.join(args)} failed")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_minflt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="the first tree (e.g. the old one)")
    ap.add_argument("--b", type=Path, required=True, help="the second tree")
    ap.add_argument("--step", choices=("backup", "restore"), default="restore")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--encrypted", action="store_true")
    ap.add_argument("--workdir", type=Path, default=Path("/dev/shm/nexus-ab"))
    a = ap.parse_args()
    work = a.workdir
    shutil.rmtree(work, ignore_errors=True)
    data = work / "corpus"
    corpus.generate(data, 1.0)
    env = {"NEXUS_BACKUP_PASSWORD": PASSWORD} if a.encrypted else {}
    enc = ["--encrypt"] if a.encrypted else []
    trees = {"a": a.a.resolve(), "b": a.b.resolve()}
    for name, tree in trees.items():  # each tree restores a repository it made itself
        _run(tree, ["--root", str(work / name), "create", "p", str(data), *enc], env)
    got: dict[str, list[tuple[float, float, int]]] = {name: [] for name in trees}
    for _round in range(a.rounds):
        for name, tree in trees.items():
            if a.step == "backup":
                root = work / f"{name}-backup"
                shutil.rmtree(root, ignore_errors=True)
                args = ["--root", str(root), "create", "p", str(data), *enc]
            else:
                target = work / f"{name}-restored"
                shutil.rmtree(target, ignore_errors=True)
                args = ["--root", str(work / name), "restore", "p", "latest", str(target)]
                args.append("--no-checkpoint")
            got[name].append(_run(tree, args, env))
    print(f"{a.step}{' (encrypted)' if a.encrypted else ''}, {a.rounds} rounds, interleaved")
    for name, tree in trees.items():
        walls = [w for w, _c, _f in got[name]]
        print(
            f"  {name} {tree}: wall median {statistics.median(walls):.3f} s "
            f"(range {min(walls):.3f}-{max(walls):.3f}), "
            f"cpu {statistics.median(c for _w, c, _f in got[name]):.3f} s, "
            f"minor faults {statistics.median(f for _w, _c, f in got[name]):,.0f}"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
