"""How long `./nexus demo` takes to show a usable screen (issue 18: "TUI first usable frame").

Each run starts the program in a pseudo-terminal of 80x24, as a person over SSH would, and
times it from the start until the screen shows the first project's backups (the word
`completed` of a backup's status, drawn once the table is filled: the demo's first project
has completed backups); then it presses `q` and waits for the program to exit. One run
unmeasured first (the bytecode and the page cache are warm after it, as on a second start),
then --runs measured: the median and the range, beside the interpreter's own start-up.

    .venv/bin/python benchmarks/demo_start.py [--runs 5] [--command "./nexus demo"]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import select
import shlex
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = b"completed"


def one(command: list[str], timeout: float = 60.0) -> float:
    """Seconds from the start of `command` in an 80x24 pty until MARKER is on its screen."""
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: an 80x24 terminal, then the program
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        os.environ["TERM"] = "xterm-256color"
        os.execvp(command[0], command)
    seen = b""
    shown: float | None = None
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            seen = seen[-len(MARKER) :] + data  # a marker split between two reads counts
            if MARKER in seen:
                shown = time.perf_counter() - start
                break
        os.write(fd, b"q")
        _drain_until_exit(pid, fd)
    finally:
        os.close(fd)
    if shown is None:
        raise RuntimeError(f"{shlex.join(command)}: no usable screen in {timeout:.0f}s")
    return shown


def _drain_until_exit(pid: int, fd: int, timeout: float = 10.0) -> None:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            with contextlib.suppress(OSError):
                os.read(fd, 65536)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def python_floor(runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--command", default=str(HERE.parent / "nexus") + " demo")
    args = ap.parse_args(argv)
    command = shlex.split(args.command)
    one(command)  # warm: bytecode written, files in the page cache
    times = [one(command) for _ in range(args.runs)]
    print(f"command: {args.command}  (80x24 pty, {args.runs} runs after one unmeasured)")
    print(
        f"usable screen  median {statistics.median(times):.3f} s  "
        f"range {min(times):.3f}-{max(times):.3f} s"
    )
    print(f"python -c pass median {python_floor(args.runs):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
