"""TUI responsiveness benchmark (issue 3's performance targets; a script, not a timed test).

    python benchmarks/tui_bench.py [--projects 50] [--backups 10000] [--backup-mib 1024]
                                   [--log-seconds 5] [--json out.json] [--keep]

Builds a root with N backups' metadata across P projects (metadata.json written in the
repository layout, as the engine writes it, so that building 10,000 backups takes seconds),
then drives the real app headless and measures:

  1. start: time from creating the app to the first frame, and to a usable screen (projects
     listed, the first project's table filled)                      target: usable < 1 s
  2. filter: for each keystroke of a filter typed into the `/` bar, the time until the table
     shows the narrowed rows                                        target: < 100 ms
  3. log: another thread appends 1,000 log lines a second to the selected project's daily
     log; the event loop's lag and a keystroke's latency meanwhile  target: lag < 100 ms
  4. backup: a real backup of --backup-mib of data runs in the app; the event loop's worst
     lag meanwhile (0 skips it)                                     target: < 100 ms

The event loop's lag is measured by a task that asks to wake every 5 ms: the lateness of each
wake-up is the time input would have waited. To say what caused a stall, each lag figure comes
with the slowest callbacks, `stuck_in` (where a watchdog thread found the loop's thread while
it had not ticked for 30 ms, in 10 ms samples) and the longest garbage collection (`gc_max_ms`;
`gc_full` counts the full ones).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core.logger import BackupLogger  # noqa: E402
from core.models import (  # noqa: E402
    BackupMetadata,
    BackupStats,
    BackupStatus,
    BackupType,
    CreateRequest,
)
from core.repo.repository import Repository  # noqa: E402
from tui.app import NexusApp  # noqa: E402
from tui.filtering import awaiting_value  # noqa: E402
from tui.messages import FilterChanged  # noqa: E402

TARGET_USABLE = 1.0
TARGET_KEY = 0.100
TARGET_LAG = 0.100


def build_root(root: Path, projects: int, backups: int) -> None:
    """P projects, N backups in all: realistic metadata, one in 20 FAILED, tags, types."""
    rng = random.Random(3)
    now = datetime.now(UTC)
    per = max(1, backups // projects)
    kinds = list(BackupType)
    for p in range(projects):
        pid = f"project-{p:02d}"
        repo = Repository(root, pid)
        repo.init()
        for b in range(per):
            created = now - timedelta(hours=(per - b) * 6, minutes=rng.randint(0, 59))
            bid = f"{created:%Y%m%d-%H%M%S}-{rng.getrandbits(24):06x}"
            failed = rng.random() < 0.05
            meta = BackupMetadata(
                id=bid,
                project_id=pid,
                type=kinds[b % len(kinds)] if b else BackupType.FULL,
                status=BackupStatus.FAILED if failed else BackupStatus.COMPLETED,
                created_at=created,
                completed_at=created + timedelta(seconds=30),
                size_bytes=rng.randint(1, 50) * 1_000_000,
                files_count=rng.randint(100, 5000),
                checksum=None if failed else "blake3:" + os.urandom(32).hex(),
                error_message="disk full" if failed else None,
                tags={"env": rng.choice(["prod", "staging"]), "host": f"web-{p % 7}"},
                stats=BackupStats(bytes_read=1_000_000, duration_seconds=30.0),
            )
            d = root / "backups" / pid / f"backup_{bid}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "metadata.json").write_text(meta.model_dump_json(indent=2))


class LagProbe:
    """Measures how late the event loop wakes a task that asks to run every 5 ms, and names
    what held the loop longest (to know what to fix): the slowest callbacks and, sampled by a
    watchdog thread while the loop is stuck, the code it was stuck in."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.slow: list[tuple[float, str]] = []
        self.stuck_in: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._orig = asyncio.events.Handle._run
        self._beat = time.perf_counter()
        self._watching = False
        self.gc_pauses: list[tuple[int, float]] = []
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        """Times every garbage collection: a full one over a big heap is a stall of its own."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._watching:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_started))

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            self._beat = t
            await asyncio.sleep(0.005)
            self.lags.append(time.perf_counter() - t - 0.005)

    def _watch(self, loop_thread: int) -> None:
        """Every 10 ms: when the loop has not ticked for 30 ms, note where it is (the
        innermost frames of this project's code and the innermost frame of all)."""
        while self._watching:
            time.sleep(0.01)
            if time.perf_counter() - self._beat < 0.03:
                continue
            frame = sys._current_frames().get(loop_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            ours = [f for f in stack if "/site-packages/" not in f.filename][-3:]
            where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in (*ours, stack[-1])]
            self.stuck_in[" > ".join(dict.fromkeys(where))] += 1

    def start(self) -> None:
        self.lags.clear()
        self.slow.clear()
        orig, slow = self._orig, self.slow

        def timed(handle: asyncio.Handle) -> None:
            t = time.perf_counter()
            orig(handle)
            took = time.perf_counter() - t
            if took > 0.04:
                slow.append((round(took * 1000, 1), repr(handle)[:160]))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.stuck_in.clear()
        self.gc_pauses.clear()
        self._watching = True
        threading.Thread(target=self._watch, args=(threading.get_ident(),), daemon=True).start()

    async def stop(self) -> dict:
        assert self._task is not None
        asyncio.events.Handle._run = self._orig  # type: ignore[method-assign]
        self._watching = False
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        lags = sorted(self.lags) or [0.0]
        return {
            "samples": len(lags),
            "max_ms": round(lags[-1] * 1000, 1),
            "p99_ms": round(lags[int(len(lags) * 0.99)] * 1000, 1),
            "median_ms": round(statistics.median(lags) * 1000, 2),
            "slowest_callbacks": sorted(self.slow, reverse=True)[:3],
            "stuck_in": dict(self.stuck_in.most_common(4)),  # 10 ms samples
            "gc_max_ms": round(max((p for _g, p in self.gc_pauses), default=0.0) * 1000, 1),
            "gc_full": sum(1 for g, _p in self.gc_pauses if g == 2),
        }


async def until(condition, timeout: float = 30.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `condition()` holds, yielding to the loop between checks."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0)
    return time.perf_counter() - start


async def bench(args: argparse.Namespace, root: Path, data: Path) -> dict:
    results: dict = {}
    t0 = time.perf_counter()
    app = NexusApp(root)
    first_frame: list[float] = []

    async with app.run_test(size=(130, 40)) as pilot:
        first_frame.append(time.perf_counter() - t0)  # mounted, first screen composed
        main = app.main
        await until(lambda: main.table.row_count > 0 and len(main.projects.projects) > 0)
        usable = time.perf_counter() - t0
        results["start"] = {
            "first_frame_s": round(first_frame[0], 3),
            "usable_s": round(usable, 3),
            "projects": len(main.projects.projects),
            "rows": main.table.row_count,
            "ok": usable < TARGET_USABLE,
        }
        await pilot.pause()

        # -- 2. filter keystrokes: the message path the bar uses, timed to the narrowed rows
        text = "status:failed tag:env=prod"
        latencies = []
        for i in range(1, len(text) + 1):
            typed = text[:i]
            start = time.perf_counter()
            main.post_message(FilterChanged(typed))
            if awaiting_value(typed):  # `status:` leaves the table as it was: time the
                # keystroke to the first refresh after the screen handled it
                shown = asyncio.get_running_loop().create_future()
                main.call_after_refresh(lambda f=shown: f.done() or f.set_result(None))
                await shown
            else:
                await until(lambda t=typed: main.table.filter == _parsed(app, t))
            await asyncio.sleep(0)  # the repaint is scheduled next
            latencies.append(time.perf_counter() - start)
        main.post_message(FilterChanged(""))
        await pilot.pause()
        results["filter"] = {
            "keystrokes": len(latencies),
            "max_ms": round(max(latencies) * 1000, 1),
            "median_ms": round(statistics.median(latencies) * 1000, 2),
            "rows_per_project": len(main.table.backups),
            "each_ms": [round(x * 1000, 1) for x in latencies],
            "ok": max(latencies) < TARGET_KEY,
        }

        # -- 3. a log growing by 1,000 lines a second
        project = main.project_id
        assert project is not None
        await pilot.press("4")  # show the log pane
        stop = threading.Event()
        written = [0]

        def writer() -> None:
            logger = BackupLogger(root)
            next_at = time.perf_counter()
            while not stop.is_set():
                for _ in range(10):
                    logger.info(project, "bench", f"line {written[0]} " + "x" * 60)
                    written[0] += 1
                next_at += 0.01
                time.sleep(max(0.0, next_at - time.perf_counter()))

        table = main.table
        await pilot.press("2")  # focus the table (the log pane stays in view)
        probe = LagProbe()
        probe.start()
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        key_latencies = []
        end = time.perf_counter() + args.log_seconds
        while time.perf_counter() < end:
            await asyncio.sleep(0.25)
            before = table.cursor_row
            start = time.perf_counter()
            app.post_message(_key("down" if before < table.row_count - 1 else "up"))
            await until(lambda b=before: table.cursor_row != b, timeout=5)
            key_latencies.append(time.perf_counter() - start)
        stop.set()
        thread.join()
        lag = await probe.stop()
        await asyncio.sleep(0.6)
        log = main.log_tail
        results["log"] = {
            "lines_written": written[0],
            "lines_per_second": round(written[0] / args.log_seconds),
            "view_lines": len(log.lines),
            "view_bounded": len(log.lines) <= 2000,
            "loop_lag": lag,
            "key_max_ms": round(max(key_latencies) * 1000, 1),
            "ok": lag["max_ms"] < TARGET_LAG * 1000 and max(key_latencies) < TARGET_KEY,
        }

        # -- 4. a real backup running in the app
        if args.backup_mib:
            probe.start()
            # a project of its own: the generated ones have metadata but no data behind it
            op = app.start_create(CreateRequest(project_id="bench-backup", data_dir=str(data)))
            started = time.perf_counter()
            await until(lambda: not op.running, timeout=600)
            seconds = time.perf_counter() - started
            lag = await probe.stop()
            results["backup"] = {
                "mib": args.backup_mib,
                "state": op.state,
                "error": op.error,
                "seconds": round(seconds, 2),
                "loop_lag": lag,
                "ok": op.state == "done" and lag["max_ms"] < TARGET_LAG * 1000,
            }
    return results


def _parsed(app: NexusApp, text: str):  # type: ignore[no-untyped-def]
    from tui.filtering import parse_filter

    return parse_filter(text, app.now())


def _key(name: str):  # type: ignore[no-untyped-def]
    from textual import events

    return events.Key(name, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--projects", type=int, default=50)
    ap.add_argument("--backups", type=int, default=10_000)
    ap.add_argument("--backup-mib", type=int, default=1024, help="0 skips the backup part")
    ap.add_argument("--log-seconds", type=float, default=5.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the generated root")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nexus-tui-bench-"))
    try:
        root, data = work / "root", work / "data"
        t = time.perf_counter()
        build_root(root, args.projects, args.backups)
        data.mkdir()
        for i in range(args.backup_mib // 8):
            (data / f"blob-{i:04d}.bin").write_bytes(os.urandom(8 << 20))
        print(
            f"built {args.backups} backups in {args.projects} projects "
            f"and {args.backup_mib} MiB of data in {time.perf_counter() - t:.1f} s"
        )
        results = asyncio.run(bench(args, root, data))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    for name, res in results.items():
        flag = "PASS" if res.pop("ok") else "FAIL"
        print(f"{flag}  {name:7} {json.dumps(res)}")
        res["ok"] = flag == "PASS"
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
