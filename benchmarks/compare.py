"""Side-by-side benchmark: nexus-backup vs restic, borg and a `tar | zstd -3` floor.

Every tool backs up the same deterministic corpus (benchmarks/corpus.py) through the same
steps, interleaved so each sees the same page-cache state:

  first full backup -> mutate (round 1) -> backup -> backup with nothing changed ->
  full restore -> single-file restore -> verify everything -> mutate+backup rounds 2 and 3

Each step is one child process measured by the OS (wall, CPU user+sys, peak RSS via wait4);
repository sizes are the apparent bytes under each repo after the first backup and after the
three rounds. Restores are checked against the corpus (a wrong restore is reported, not timed
as a win). Every step starts after a sync, so no step is timed writing back the one before.
With --runs N the median of each figure is quoted. Nothing is removed until the last step is
timed (see remove_runs): at scale 1.0 a run leaves about 3.5 GiB behind until then.

    python benchmarks/compare.py [--scale 1.0] [--runs 3] [--tools nexus,restic,borg,tar]
                                 [--json out.json] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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

OPS: dict[str, str] = {
    "backup_full": "first full backup",
    "backup_mutated": "backup after mutation",
    "backup_nochange": "backup, nothing changed",
    "restore_full": "full restore",
    "restore_file": "single-file restore",
    "verify": "verify everything",
}
SIZES: dict[str, str] = {
    "repo_first": "repo after first backup",
    "repo_after3": "repo after 3 rounds",
}
ALL_TOOLS = ("nexus", "nexus-enc", "restic", "borg", "tar")
LABELS = {
    "nexus": "nexus-backup",
    "nexus-enc": "nexus-backup encrypted",
    "restic": "restic",
    "borg": "borg",
    "tar": "tar+zstd",
}
INSTALL_HINT = {
    "restic": "apt-get install restic",
    "borg": "apt-get install borgbackup",
    "tar": "apt-get install tar zstd",
}
#: Issue 5's targets: nexus-backup wall time at most 0.8 x restic's for these steps.
WALL_TARGET_OPS = ("backup_full", "backup_mutated", "backup_nochange", "restore_full")
WALL_TARGET = 0.8
#: the figures of each step, with how each is labelled and formatted in the table
METRICS: tuple[tuple[str, str, str], ...] = (
    ("wall", "wall s", "s"),
    ("cpu", "cpu s", "s"),
    ("rss_mib", "peak MiB", "peak"),
)


@dataclass
class Step:
    """A command to measure: argv or a bash string, run in cwd."""

    cmd: list[str] | str
    cwd: Path | None = None


class Tool(ABC):
    """One backup tool driven through the benchmark's steps against one repository."""

    name: str
    env: dict[str, str]

    def __init__(self, work: Path, data: Path) -> None:
        self.work = work / self.name
        self.data = data
        self.repo = self.work / "repo"
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = {}
        self.n = 0

    def setup(self) -> Step | None:
        """Repository initialisation (not timed)."""
        return None

    @abstractmethod
    def backup(self, full: bool) -> Step: ...

    @abstractmethod
    def restore_all(self, target: Path) -> Step: ...

    @abstractmethod
    def restore_one(self, target: Path, rel: str) -> Step: ...

    @abstractmethod
    def verify(self) -> Step: ...

    def restored_root(self, target: Path) -> Path:
        """Where the corpus's top directory lands inside a restore target."""
        return target

    def repo_bytes(self) -> int | None:
        """Apparent size of the repository; None when there is none (the tool failed)."""
        return tree_bytes(self.repo) if any(self.repo.glob("*")) else None


class Nexus(Tool):
    name = "nexus"
    project = "bench"

    def __init__(self, work: Path, data: Path, cmd: list[str]) -> None:
        super().__init__(work, data)
        self.cmd = [*cmd, "--root", str(self.repo)]

    def backup(self, full: bool) -> Step:
        kind = "full" if full else "incremental"
        return Step([*self.cmd, "create", self.project, str(self.data), "--type", kind])

    def restore_all(self, target: Path) -> Step:
        return Step([*self.cmd, "restore", self.project, "latest", str(target), "--no-checkpoint"])

    def restore_one(self, target: Path, rel: str) -> Step:
        return Step(
            [
                *self.cmd,
                "restore",
                self.project,
                "latest",
                str(target),
                "--path",
                rel,
                "--no-checkpoint",
            ]
        )

    def verify(self) -> Step:
        return Step([*self.cmd, "verify", self.project, "--all"])

    def repo_bytes(self) -> int | None:
        projects = self.repo / "backups" / self.project
        return tree_bytes(projects) if projects.exists() else None


class NexusEncrypted(Nexus):
    """nexus-backup on an encrypted project (issue 12), beside restic, which always
    encrypts: its ratio to the plain row is what encryption costs (each process pays one
    Argon2id key derivation, about a third of a second, in every step)."""

    name = "nexus-enc"

    def __init__(self, work: Path, data: Path, cmd: list[str]) -> None:
        super().__init__(work, data, cmd)
        self.env = {"NEXUS_BACKUP_PASSWORD": "benchmark password"}

    def backup(self, full: bool) -> Step:
        step = super().backup(full)
        assert isinstance(step.cmd, list)
        step.cmd.append("--encrypt")
        return step


class Restic(Tool):
    """restic with its default (always-on) encryption and compression auto, local repo."""

    name = "restic"

    def __init__(self, work: Path, data: Path) -> None:
        super().__init__(work, data)
        self.env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(self.work / "cache")}
        self.base = ["restic", "-r", str(self.repo), "--compression", "auto", "--quiet"]

    def setup(self) -> Step:
        return Step([*self.base, "init"])

    def backup(self, full: bool) -> Step:
        # restic picks the previous snapshot of the same path as parent by itself.
        return Step([*self.base, "backup", str(self.data)])

    def restore_all(self, target: Path) -> Step:
        return Step([*self.base, "restore", "latest", "--target", str(target)])

    def restore_one(self, target: Path, rel: str) -> Step:
        return Step(
            [
                *self.base,
                "restore",
                "latest",
                "--target",
                str(target),
                "--include",
                str(self.data / rel),
            ]
        )

    def verify(self) -> Step:
        return Step([*self.base, "check", "--read-data"])

    def restored_root(self, target: Path) -> Path:
        return target / self.data.relative_to(self.data.anchor)


class Borg(Tool):
    """borg 1.x, unencrypted, zstd level 3 (same level as the tar floor)."""

    name = "borg"

    def __init__(self, work: Path, data: Path) -> None:
        super().__init__(work, data)
        self.env = {
            "BORG_BASE_DIR": str(self.work / "base"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }
        self.last = ""

    def setup(self) -> Step:
        return Step(["borg", "init", "--encryption=none", str(self.repo)])

    def backup(self, full: bool) -> Step:
        self.n += 1
        self.last = f"a{self.n:03d}"
        # Archive paths relative to the corpus (cwd), so they restore into the target as-is.
        return Step(
            ["borg", "create", "--compression", "zstd,3", f"{self.repo}::{self.last}", "."],
            cwd=self.data,
        )

    def restore_all(self, target: Path) -> Step:
        return Step(["borg", "extract", f"{self.repo}::{self.last}"], cwd=target)

    def restore_one(self, target: Path, rel: str) -> Step:
        return Step(["borg", "extract", f"{self.repo}::{self.last}", rel], cwd=target)

    def verify(self) -> Step:
        return Step(["borg", "check", "--verify-data", str(self.repo)])


class TarZstd(Tool):
    """The floor: GNU tar incremental archives (--listed-incremental) piped to `zstd -3 -T0`."""

    name = "tar"

    def _archives(self) -> str:
        names = (self.repo / f"{i:03d}.tar.zst" for i in range(1, self.n + 1))
        return " ".join(shlex.quote(str(p)) for p in names)

    def setup(self) -> Step:
        return Step(["mkdir", "-p", str(self.repo)])

    def backup(self, full: bool) -> Step:
        self.n += 1
        snar = shlex.quote(str(self.repo / "state.snar"))
        out = shlex.quote(str(self.repo / f"{self.n:03d}.tar.zst"))
        return Step(
            f"tar --listed-incremental={snar} -C {shlex.quote(str(self.data))} -cf - . "
            f"| zstd -3 -T0 -q -f -o {out}"
        )

    def restore_all(self, target: Path) -> Step:
        t = shlex.quote(str(target))
        return Step(
            f"for a in {self._archives()}; do "
            f'zstd -dc -q "$a" | tar --listed-incremental=/dev/null -xf - -C {t} || exit 1; done'
        )

    def restore_one(self, target: Path, rel: str) -> Step:
        t, member = shlex.quote(str(target)), shlex.quote(f"./{rel}")
        # Every archive of the chain is read; those without the member fail and are skipped.
        return Step(
            f"for a in {self._archives()}; do "
            f'zstd -dc -q "$a" | tar -xf - -C {t} {member} 2>/dev/null; done; '
            f"test -f {t}/{member}"
        )

    def verify(self) -> Step:
        return Step(
            f"for a in {self._archives()}; do "
            f'zstd -dc -q "$a" | tar -tf - > /dev/null || exit 1; done'
        )


def available(tools: list[str]) -> tuple[list[str], dict[str, str]]:
    """The tools that can run here, and why the others are skipped."""
    ok, skipped = [], {}
    need = {"restic": ["restic"], "borg": ["borg"], "tar": ["tar", "zstd"]}
    for t in tools:
        missing = [b for b in need.get(t, []) if shutil.which(b) is None]
        if missing:
            skipped[t] = f"{', '.join(missing)} not installed ({INSTALL_HINT[t]})"
        else:
            ok.append(t)
    return ok, skipped


def make_tools(names: list[str], work: Path, data: Path, nexus_cmd: list[str]) -> list[Tool]:
    out: list[Tool] = []
    for n in names:
        if n == "nexus":
            out.append(Nexus(work, data, nexus_cmd))
        elif n == "nexus-enc":
            out.append(NexusEncrypted(work, data, nexus_cmd))
        elif n == "restic":
            out.append(Restic(work, data))
        elif n == "borg":
            out.append(Borg(work, data))
        elif n == "tar":
            out.append(TarZstd(work, data))
    return out


ToolFactory = Callable[[list[str], Path, Path, list[str]], list[Tool]]


class Probe(Protocol):
    """Figures taken around each measured step besides the OS's (e.g. a proxy's counts)."""

    def begin(self, tool: Tool) -> None: ...

    def end(self, tool: Tool) -> dict[str, Any]: ...


def one_run(
    run_no: int,
    names: list[str],
    base: Path,
    args: argparse.Namespace,
    nexus_cmd: list[str],
    make: ToolFactory = make_tools,
    probe: Probe | None = None,
) -> dict[str, Any]:
    """One full pass over every step for every tool; returns {tool: figures}.

    `make` builds the tools (another script drives other repositories through the same
    steps); `probe`'s figures for a step are stored beside the measured ones."""
    work = base / f"run{run_no}"
    data = work / "corpus"
    gen = corpus.generate(data, args.scale, args.seed)
    print(
        f"[run {run_no}] corpus: {gen.files} files, {gen.bytes / MIB:.1f} MiB "
        f"in {gen.seconds:.1f}s",
        file=sys.stderr,
    )
    # Rotate the order each run so no tool is always first after a mutation.
    rot = run_no % len(names)
    tools = make(names[rot:] + names[:rot], work, data, nexus_cmd)
    res: dict[str, dict[str, Any]] = {t.name: {"errors": [], "notes": []} for t in tools}

    def do(tool: Tool, key: str, step: Step) -> Measure | None:
        log = work / f"{tool.name}.log"
        since = log.stat().st_size if log.exists() else 0
        # Each step starts with nothing left to write back from the one before (a restore
        # leaves its tree dirty in the page cache for 30 s): another tool's writeback is
        # never timed as this one's.
        os.sync()
        if probe is not None:
            probe.begin(tool)
        m = measure(step.cmd, cwd=step.cwd, env=tool.env, log=log, timeout=args.timeout)
        extra = probe.end(tool) if probe is not None else {}
        print(
            f"[run {run_no}] {LABELS[tool.name]:12} {key:16} {m.wall:8.2f}s "
            f"cpu {m.cpu:8.2f}s rss {m.rss_mib:7.1f} MiB rc={m.rc}",
            file=sys.stderr,
        )
        if key:
            res[tool.name][key] = {**m.as_dict(), **extra}
        ok = m.rc == 0 or (tool.name == "nexus" and m.rc == 3)
        if not ok:
            why = log_tail(log, 3, since)
            res[tool.name]["errors"].append(f"{key or 'setup'}: rc={m.rc}: {why}")
        elif m.rc == 3:
            res[tool.name]["notes"].append(f"{key}: completed with files skipped (rc=3)")
        return m if ok else None

    for t in tools:
        s = t.setup()
        if s is not None:
            do(t, "", s)
    for t in tools:
        do(t, "backup_full", t.backup(full=True))
    for t in tools:
        res[t.name]["repo_first"] = t.repo_bytes()

    corpus.mutate(data, 1, args.seed)
    for t in tools:
        do(t, "backup_mutated", t.backup(full=False))
    for t in tools:
        do(t, "backup_nochange", t.backup(full=False))

    want = corpus.digest(data)
    for t in tools:
        target = work / f"restore-{t.name}"
        target.mkdir()
        if do(t, "restore_full", t.restore_all(target)):
            got = corpus.digest(t.restored_root(target))
            res[t.name]["restore_ok"] = got == want
            if got != want:
                res[t.name]["restore_full"]["bad"] = True  # a wrong restore is not a time
                res[t.name]["errors"].append("restore_full: restored tree differs from the data")

    single = (data / corpus.SINGLE_FILE).read_bytes()
    for t in tools:
        target = work / f"restore1-{t.name}"
        target.mkdir()
        if do(t, "restore_file", t.restore_one(target, corpus.SINGLE_FILE)):
            got_path = t.restored_root(target) / corpus.SINGLE_FILE
            same = got_path.is_file() and got_path.read_bytes() == single
            res[t.name]["restore_file_ok"] = same
            if not same:
                res[t.name]["restore_file"]["bad"] = True
                res[t.name]["errors"].append(f"restore_file: {corpus.SINGLE_FILE} not restored")

    for t in tools:
        do(t, "verify", t.verify())

    for round_no in (2, 3):
        corpus.mutate(data, round_no, args.seed)
        for t in tools:
            do(t, f"backup_round{round_no}", t.backup(full=False))
    for t in tools:
        res[t.name]["repo_after3"] = t.repo_bytes()
    res["_corpus"] = {"files": gen.files, "bytes": gen.bytes, "seconds": gen.seconds}
    return res  # `work` is removed once every run is done: see remove_runs


def remove_runs(base: Path, args: argparse.Namespace) -> None:
    """The runs' trees (corpora, repositories, restored trees), removed only once the last
    step is timed. On an ext4 without a journal (this machine's root filesystem) each new
    inode is first checked against every inode freed in the last minute (`recently_deleted`
    in fs/ext4/ialloc.c; five while their table block is dirty): a restore right after
    another tool's restored tree was removed spent half its samples there (perf) and 2-4 s
    more in the kernel, whichever tool it was."""
    if args.keep:
        return
    if args.workdir:
        for run in base.glob("run[0-9]*"):
            shutil.rmtree(run, ignore_errors=True)
    else:
        shutil.rmtree(base, ignore_errors=True)


def summarise(
    runs: list[dict[str, Any]], names: list[str], keys: tuple[str, ...] = ("wall", "cpu", "rss_mib")
) -> dict[str, dict[str, Any]]:
    """Median of each figure over the runs (failed steps left out)."""
    out: dict[str, dict[str, Any]] = {}
    for t in names:
        out[t] = {}
        for op in OPS:
            ms = [r[t][op] for r in runs if op in r.get(t, {}) and _ok(t, r[t][op])]
            out[t][op] = {k: median(m.get(k) for m in ms) for k in keys} if ms else None
        for key in SIZES:
            out[t][key] = median(r[t][key] for r in runs if key in r.get(t, {}))
    return out


def _ok(tool: str, m: dict[str, Any]) -> bool:
    return not m.get("bad") and (m["rc"] == 0 or (tool.startswith("nexus") and m["rc"] == 3))


def ratios(med: dict[str, dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    """nexus-backup's figure divided by each other tool's (below 1 = nexus-backup better)."""
    out: dict[str, dict[str, Any]] = {}
    if "nexus" not in med:
        return out
    nx = med["nexus"]
    for t in names:
        if t == "nexus":
            continue
        r: dict[str, Any] = {}
        for op in OPS:
            a, b = nx.get(op), med[t].get(op)
            r[op] = {k: _div(a[k], b.get(k)) for k in a} if a and b else None
        for key in SIZES:
            r[key] = _div(nx.get(key), med[t].get(key))
        out[t] = r
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def targets(
    med: dict[str, dict[str, Any]],
    wall_ops: tuple[str, ...] = WALL_TARGET_OPS,
    factor: float = WALL_TARGET,
) -> list[dict[str, Any]]:
    """Issue 5's targets against restic (only when both ran); another issue's `wall_ops`
    and `factor` for the wall-time targets."""
    if "nexus" not in med or "restic" not in med:
        return []
    nx, rs = med["nexus"], med["restic"]
    out = []
    for op in wall_ops:
        a, b = nx.get(op), rs.get(op)
        if a and b:
            out.append(
                {
                    "target": f"{OPS[op]}: wall <= {factor} x restic",
                    "nexus": a["wall"],
                    "restic": b["wall"],
                    "ratio": _div(a["wall"], b["wall"]),
                    "ok": a["wall"] <= factor * b["wall"],
                }
            )
    a, b = nx.get("repo_after3"), rs.get("repo_after3")
    if a and b:
        out.append(
            {
                "target": "repo after 3 rounds <= restic",
                "nexus": a,
                "restic": b,
                "ratio": _div(a, b),
                "ok": a <= b,
            }
        )
    worst = None
    for op in OPS:
        x, y = nx.get(op), rs.get(op)
        if x and y and (worst is None or x["rss_mib"] / y["rss_mib"] > worst[0]):
            worst = (x["rss_mib"] / y["rss_mib"], op, x["rss_mib"], y["rss_mib"])
    if worst:
        out.append(
            {
                "target": f"peak RSS <= restic (worst step: {OPS[worst[1]]})",
                "nexus": worst[2],
                "restic": worst[3],
                "ratio": round(worst[0], 3),
                "ok": worst[0] <= 1.0,
            }
        )
    return out


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "MiB":
        return f"{v / MIB:.1f}" if v >= 0.05 * MIB else f"{v / MIB:.3f}"
    if unit == "peak":
        return f"{v:.1f}"
    if unit == "n":
        return f"{v:.0f}"
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def render(
    report: dict[str, Any],
    metrics: tuple[tuple[str, str, str], ...] = METRICS,
    heading: str = "nexus-backup benchmark",
    targets_title: str = "targets (issue 5, vs restic):",
) -> str:
    """The text table: each tool's medians, then nexus-backup's ratio to each other tool."""
    names: list[str] = report["tools"]
    med, rat = report["median"], report["ratios"]
    others = [t for t in names if t != "nexus"] if "nexus" in names else []
    head = ["step", "metric", *(LABELS[t] for t in names), *(f"nx/{LABELS[t]}" for t in others)]
    rows: list[list[str]] = []
    for op, label in OPS.items():
        for i, (k, metric, unit) in enumerate(metrics):
            cells = [_fmt((med[t][op] or {}).get(k), unit) for t in names]
            rcells = [
                _fmt(((rat[t].get(op) or {}).get(k)), "x") if t in rat else "-" for t in others
            ]
            rows.append([label if i == 0 else "", metric, *cells, *rcells])
    for key, label in SIZES.items():
        cells = [_fmt(med[t].get(key), "MiB") for t in names]
        rcells = [_fmt(rat[t].get(key), "x") if t in rat else "-" for t in others]
        rows.append([label, "MiB", *cells, *rcells])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    cfg = report["config"]
    out = [
        f"{heading}: scale {cfg['scale']} ({cfg['corpus_files']} files, "
        f"{cfg['corpus_mib']:.0f} MiB), {cfg['runs']} run(s), median quoted, warm page cache",
        f"machine: {machine_line(report['machine'])}",
        "versions: " + "; ".join(v for v in report["versions"].values() if v),
        "",
        line(head),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
    ]
    if report["targets"]:
        out += ["", targets_title]
        for tg in report["targets"]:
            out.append(f"  [{'PASS' if tg['ok'] else 'MISS'}] {tg['target']}: ratio {tg['ratio']}")
    for t, why in report["skipped"].items():
        out.append(f"skipped {LABELS.get(t, t)}: {why}")
    for t in names:
        for kind in ("errors", "notes"):
            for e in sorted({e for r in report["runs"] for e in r.get(t, {}).get(kind, [])}):
                out.append(f"{kind[:-1]} {LABELS[t]}: {e}")
    return "\n".join(out)


def run_config(
    args: argparse.Namespace, runs: list[dict], nexus_cmd: object, t0: float, **extra: object
) -> dict[str, Any]:
    """The report's `config`: what was run, on which corpus, how long it took."""
    c = runs[0]["_corpus"]
    return {
        "scale": args.scale,
        "runs": args.runs,
        "seed": args.seed,
        "corpus_files": c["files"],
        "corpus_mib": c["bytes"] / MIB,
        "single_file": corpus.SINGLE_FILE,
        "nexus_command": nexus_cmd,
        **extra,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="corpus size; 1.0 = about 0.5 GiB")
    ap.add_argument("--runs", type=int, default=1, help="repeat N times, quote the median")
    ap.add_argument(
        "--tools", default=",".join(ALL_TOOLS), help="comma list of " + ",".join(ALL_TOOLS)
    )
    ap.add_argument("--json", dest="json_out", help="also write the full report as JSON here")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", help="where corpora and repos go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--nexus", help="command for nexus-backup (default: the venv's script)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per step")
    args = ap.parse_args(argv)

    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in wanted if t not in ALL_TOOLS]
    if bad:
        ap.error(f"unknown tool(s): {', '.join(bad)}")
    names, skipped = available(wanted)
    for t, why in skipped.items():
        print(f"skipping {LABELS[t]}: {why}", file=sys.stderr)
    if not names:
        print("no tool to run", file=sys.stderr)
        return 2
    nexus_cmd = nexus_command(args.nexus)

    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="nexus-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    base = base.resolve()
    machine = machine_info(base)
    t0 = time.perf_counter()
    runs = [one_run(i, names, base, args, nexus_cmd) for i in range(1, args.runs + 1)]
    remove_runs(base, args)
    med = summarise(runs, names)
    report: dict[str, Any] = {
        "config": run_config(args, runs, nexus_cmd, t0),
        "machine": machine,
        "versions": tool_versions(names),
        "tools": names,
        "skipped": skipped,
        "runs": runs,
        "median": med,
        "ratios": ratios(med, names),
    }
    report["targets"] = targets(med)
    report["table"] = render(report)
    print(report["table"])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r[t]["errors"] for r in runs for t in names) else 0


if __name__ == "__main__":
    sys.exit(main())
