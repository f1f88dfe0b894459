"""Shared pieces of the benchmark scripts: measured child processes and machine facts.

Every figure comes from the operating system, not from the tool under test: wall time from a
monotonic clock around the child, CPU time and peak RSS from the child's rusage as returned by
``os.wait4`` (so a tool cannot under-report itself, and threads are included).
"""

from __future__ import annotations

import compileall
import contextlib
import importlib.metadata
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

MIB = 1 << 20
HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent


@dataclass
class Measure:
    """One command's cost. rss_mib is the peak RSS of the largest process in the command's
    tree (Linux ru_maxrss); for a shell pipeline that is its biggest stage, not the sum."""

    wall: float
    cpu: float
    rss_mib: float
    rc: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


# Why a launcher: Linux carries a process's pre-exec RSS high-water mark into its ru_maxrss,
# and subprocess spawns with vfork, so a command started straight from this (large) Python
# process would report at least this process's peak RSS. A tiny `python -S` launcher forks
# the command from a ~6 MiB image and reports the command's own wait4 rusage.
_LAUNCHER = r"""
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        os.write(2, f"cannot run {argv[0]}: {e}\n".encode())
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
rc = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    f.write(f"{wall} {ru.ru_utime + ru.ru_stime} {ru.ru_maxrss} {rc}")
"""


def measure(
    cmd: Sequence[str] | str,
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 3600.0,
) -> Measure:
    """Run cmd (a string runs under `bash -o pipefail -c`), output appended to `log`.

    Wall, CPU (user+sys, all threads and waited-for descendants) and peak RSS all come from
    the launcher's fork + os.wait4 of the command. The command gets its own session so a
    timeout can kill a whole pipeline.
    """
    argv = ["bash", "-o", "pipefail", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    full_env = {**os.environ, **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    fd, result = tempfile.mkstemp(prefix="measure-", suffix=".txt")
    os.close(fd)
    try:
        with open(log, "ab") as out:
            out.write(f"\n$ {cmd if isinstance(cmd, str) else shlex.join(argv)}\n".encode())
            out.flush()
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _LAUNCHER, result, *argv],
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
            timer = threading.Timer(timeout, _kill_group, (proc.pid,))
            timer.start()
            try:
                _, status, ru = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped already: keep Popen quiet
        fields = Path(result).read_text().split()
    finally:
        os.unlink(result)
    if len(fields) == 4:  # the launcher finished: the command's own figures
        return Measure(
            wall=round(float(fields[0]), 4),
            cpu=round(float(fields[1]), 4),
            rss_mib=round(int(fields[2]) / 1024, 1),
            rc=int(fields[3]),
        )
    return Measure(  # killed (timeout): what the OS says about the launcher's tree
        wall=round(wall, 4),
        cpu=round(ru.ru_utime + ru.ru_stime, 4),
        rss_mib=round(ru.ru_maxrss / 1024, 1),
        rc=proc.returncode or -1,
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def log_tail(log: Path, n: int = 3, since: int = 0) -> str:
    """The last n non-empty lines written to log after byte offset `since`, on one line."""
    try:
        with open(log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("$ ")]
    return " | ".join(lines[-n:])[:400]


def tree_bytes(path: Path) -> int:
    """Apparent size (sum of st_size) of everything under path; symlinks not followed."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def median(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


#: The project's packages: compiled to bytecode before the runs, as installing them does (with
#: PYTHONDONTWRITEBYTECODE set, as on these machines, every start would compile them again).
PACKAGES = ("core", "cli", "api", "tui")


def compile_project() -> None:
    for name in PACKAGES:
        compileall.compile_dir(str(HERE.parent / name), quiet=1)


def nexus_command(explicit: str | None = None) -> list[str]:
    """How to run nexus-backup: --nexus, else the venv's script, else PATH, else the module
    (the project's bytecode compiled first, as an install leaves it)."""
    if explicit:
        return shlex.split(explicit)
    compile_project()
    beside = Path(sys.executable).parent / "nexus-backup"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("nexus-backup")
    if found:
        return [found]
    return [sys.executable, "-c", "from cli.main import run; run()"]


def _first_line(cmd: Sequence[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout or r.stderr).strip()
    return text.splitlines()[0].strip("* ") if text else None


def nexus_version() -> str:
    try:
        ver = importlib.metadata.version("nexus-backup")
    except importlib.metadata.PackageNotFoundError:
        ver = "?"
    rev = _first_line(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(PROJECT), "status", "--porcelain", "--", "core"])
    return f"nexus-backup {ver} (git {rev or '?'}{'+dirty' if dirty else ''})"


def tool_versions(tools: Iterable[str]) -> dict[str, str | None]:
    cmds = {
        "restic": ["restic", "version"],
        "borg": ["borg", "--version"],
        "tar": ["tar", "--version"],
        "zstd": ["zstd", "--version"],
    }
    out: dict[str, str | None] = {}
    for t in tools:
        if t == "nexus":
            out[t] = nexus_version()
        elif t in cmds:
            out[t] = _first_line(cmds[t])
            if t == "tar":
                out["zstd"] = _first_line(cmds["zstd"])
    return out


def machine_info(workdir: Path | None = None) -> dict[str, object]:
    """The facts a reader needs to compare figures across machines."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "loadavg_at_start": _loadavg(),
    }
    if workdir is not None:
        r = subprocess.run(["df", "--output=fstype", str(workdir)], capture_output=True, text=True)
        lines = r.stdout.split()
        info["filesystem"] = lines[-1] if len(lines) > 1 else None
    return info


def _loadavg() -> float | None:
    """1-minute load average: figures taken on a busy machine are not comparable."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def machine_line(info: Mapping[str, object]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, "
        f"{info['os']}, kernel {info['kernel']}, Python {info['python']}"
        + (f", fs {info['filesystem']}" if info.get("filesystem") else "")
        + (
            f", load {info['loadavg_at_start']:.1f}"
            if info.get("loadavg_at_start") is not None
            else ""
        )
    )
