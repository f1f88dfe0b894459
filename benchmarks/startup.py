"""Start-up of nexus-backup's quick commands against restic's (issue 18).

A project `web` (and a restic repository) with --backups backups of one small tree, then each
command run warm (once unmeasured) and --runs times: the median and the range of the wall
time, and the median CPU time, of `nexus-backup list web`, `list web --json`, `projects`,
`--version`, `--help` beside `restic snapshots` and `restic version`, with the interpreter's
own start-up (`python -c pass`, the floor of any Python program) for scale.

    .venv/bin/python benchmarks/startup.py --runs 3 [--backups 20] [--json out.json]
        [--baseline "env PYTHONPATH=/tmp/old-tree .venv/bin/nexus-backup"]

With --baseline, each nexus command is also run by that other nexus-backup (an older tree),
the two taking turns run by run, so that both see the same load on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Measure,
    machine_info,
    machine_line,
    measure,
    nexus_command,
    tool_versions,
)


def _corpus(top: Path) -> Path:
    data = top / "data"
    for i in range(20):
        sub = data / f"dir{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{i}.txt").write_text(f"file {i}\n" * (50 * (i + 1)))
    return data


def _setup(work: Path, nexus: list[str], backups: int, log: Path) -> dict[str, str]:
    """The nexus root and the restic repository, each with `backups` backups of the corpus;
    returns restic's environment."""
    data = _corpus(work)
    root = work / "nexus"
    env = {
        "RESTIC_REPOSITORY": str(work / "restic"),
        "RESTIC_PASSWORD": "bench",
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }
    steps: list[list[str]] = [["restic", "init"]]
    for i in range(backups):
        (data / "changing.txt").write_text(f"backup {i}\n")
        for cmd in (
            [*nexus, "--root", str(root), "create", "web", str(data)],
            ["restic", "backup", "--host", "bench", "--tag", "web", str(data)],
        ):
            steps.append(cmd)
    for cmd in steps:
        if cmd[0] == "restic" and not shutil.which("restic"):
            continue
        m = measure(cmd, log=log, env=env)
        if m.rc != 0:
            raise SystemExit(f"setup failed ({m.rc}): {' '.join(cmd)}; see {log}")
    return env


def _commands(
    nexus: list[str], root: Path, baseline: list[str] | None
) -> list[tuple[str, list[str]]]:
    cmds = [("python -c pass", [sys.executable, "-c", "pass"])]
    for label, prog in (("nexus-backup", nexus), ("baseline", baseline)):
        if prog is None:
            continue
        at = [*prog, "--root", str(root)]
        cmds += [
            (f"{label} list web", [*at, "list", "web"]),
            (f"{label} list web --json", [*at, "list", "web", "--json"]),
            (f"{label} projects", [*at, "projects"]),
            (f"{label} --version", [*prog, "--version"]),
            (f"{label} --help", [*prog, "--help"]),
        ]
    if shutil.which("restic"):
        cmds += [
            ("restic snapshots", ["restic", "snapshots"]),
            ("restic snapshots --json", ["restic", "snapshots", "--json"]),
            ("restic version", ["restic", "version"]),
        ]
    return cmds


def _summary(ms: list[Measure]) -> dict[str, float]:
    walls = [m.wall for m in ms]
    return {
        "wall_median": round(statistics.median(walls), 3),
        "wall_min": round(min(walls), 3),
        "wall_max": round(max(walls), 3),
        "cpu_median": round(statistics.median(m.cpu for m in ms), 3),
        "rss_mib": max(m.rss_mib for m in ms),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="measured runs of each command")
    ap.add_argument("--backups", type=int, default=20, help="backups in each repository")
    ap.add_argument("--nexus", help="how to run nexus-backup (default: the venv's script)")
    ap.add_argument("--baseline", help="another nexus-backup to run turn about (an older tree)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    nexus = nexus_command(args.nexus)  # compiles the project's bytecode first
    work = Path(tempfile.mkdtemp(prefix="nexus-startup-"))
    log = work / "log.txt"
    report: dict[str, object] = {
        "machine": machine_info(work),
        "versions": tool_versions(["nexus", "restic"]),
        "runs": args.runs,
        "backups": args.backups,
        "commands": {},
    }
    try:
        env = _setup(work, nexus, args.backups, log)
        baseline = shlex.split(args.baseline) if args.baseline else None
        cmds = _commands(nexus, work / "nexus", baseline)
        for _name, cmd in cmds:
            measure(cmd, log=log, env=env)  # warm: page cache, bytecode, restic's cache
        runs: dict[str, list[Measure]] = {name: [] for name, _ in cmds}
        for _ in range(args.runs):  # turn about, so that a burst of load hits every command
            for name, cmd in cmds:
                runs[name].append(measure(cmd, log=log, env=env))
        failed = [name for name, ms in runs.items() if any(m.rc != 0 for m in ms)]
        if failed:
            raise SystemExit(f"{', '.join(failed)} failed; see {log}")
        results = {name: _summary(ms) for name, ms in runs.items()}
        report["commands"] = results
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {machine_line(report['machine'])}")  # type: ignore[arg-type]
    print(f"versions: {report['versions']}")
    print(f"{args.backups} backups; median of {args.runs} warm runs (range), CPU median")
    if args.baseline:
        print(f"baseline: {args.baseline}")
    print(f"{'command':32} {'wall s':>8} {'range':>13} {'cpu s':>7}")
    for name, r in results.items():
        rng = f"{r['wall_min']:.3f}-{r['wall_max']:.3f}"
        print(f"{name:32} {r['wall_median']:8.3f} {rng:>13} {r['cpu_median']:7.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
