"""Regenerate the README's screenshots: `python -m tui.screenshots [OUT_DIR]`.

Builds the demo data (with its fixed clock, so the pictures only change when the UI does) in a
temporary directory that plays $HOME, drives the app headless with the keyboard as a person
would, and writes one SVG per view into `screenshots/`. The new-backup picture shows a real
backup running (of a generated directory large enough to be caught mid-way).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input

from core.demo import DEMO_NOW, build_demo
from core.models import BackupType
from tui.app import NexusApp

SHOTS: list[tuple[str, tuple[int, int], str]] = [
    ("main", (130, 36), "the main screen: projects, backups, detail and live log"),
    ("main-80x24", (80, 24), "the same at 80x24: detail and log share a pane (3 / 4)"),
    ("filter", (110, 30), "the / filter narrowing the table as you type"),
    ("restore-preview", (120, 36), "restore: target, policy and the dry-run preview"),
    ("browse", (110, 30), "browsing a backup, files marked for restore"),
    ("stats", (80, 24), "a project's stats (T): plots over time and the phases of a backup"),
    # last: it leaves a cancelled (FAILED) backup behind
    ("new-backup", (110, 32), "the new-backup form with its progress bar"),
]


async def _settle(pilot: Pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        workers = [w for w in pilot.app.workers if w.is_running and w.group != "ops"]
        await asyncio.gather(*(w.wait() for w in workers), return_exceptions=True)
    await pilot.pause()


async def _select(pilot: Pilot, project: str) -> None:
    await _settle(pilot)
    pilot.app.main.projects.select_project(project)  # type: ignore[attr-defined]
    await _settle(pilot)


async def _main(pilot: Pilot) -> None:
    await _select(pilot, "website")


async def _filter(pilot: Pilot) -> None:
    await _select(pilot, "website")
    await pilot.press("slash", *"type:inc tag:env")
    await _settle(pilot)


async def _new_backup(pilot: Pilot) -> None:
    """Start a real backup of the photos project, grown by big generated clips, and catch it
    mid-way (its own directory: another one would first ask to re-point the project)."""
    app: NexusApp = pilot.app  # type: ignore[assignment]
    big = Path(os.path.expanduser("~")) / "root" / "demo-data" / "photos" / "videos"
    big.mkdir(parents=True, exist_ok=True)
    for i in range(64):
        (big / f"clip-{i:02d}.mp4").write_bytes(os.urandom(4 * 1024 * 1024))
    await _select(pilot, "photos")
    await pilot.press("n")
    await _settle(pilot)
    form = app.screen
    form.query_one("#type").value = BackupType.FULL  # type: ignore[attr-defined]
    form.query_one("#tags", Input).value = "kind=media"
    form.action_start()  # type: ignore[attr-defined]  # (a key press would wait for idle)
    op = form.op  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while op.running and time.monotonic() < deadline:
        event = op.progress
        if event and event.bytes_total and event.bytes_done > event.bytes_total * 0.3:
            break
        await asyncio.sleep(0.01)
    await pilot.pause()


async def _restore_preview(pilot: Pilot) -> None:
    await _select(pilot, "website")
    await pilot.press("down", "r")
    await _settle(pilot)
    await pilot.press("ctrl+d")
    await _settle(pilot)


async def _browse(pilot: Pilot) -> None:
    await _select(pilot, "website")
    await pilot.press("b")
    await _settle(pilot)
    await pilot.press("down", "enter")
    await _settle(pilot)
    await pilot.press("down", "space", "down", "down", "space")
    await _settle(pilot)


async def _stats(pilot: Pilot) -> None:
    await _select(pilot, "website")
    await pilot.press("T")
    await _settle(pilot)


STEPS: dict[str, Callable[[Pilot], Awaitable[None]]] = {
    "stats": _stats,
    "main": _main,
    "main-80x24": _main,
    "filter": _filter,
    "new-backup": _new_backup,
    "restore-preview": _restore_preview,
    "browse": _browse,
}


async def _shoot(root: Path, name: str, size: tuple[int, int], out: Path) -> None:
    app = NexusApp(root, clock=lambda: DEMO_NOW, poll_interval=3600)
    async with app.run_test(size=size) as pilot:
        await STEPS[name](pilot)
        svg = app.export_screenshot(title=f"nexus-backup · {name}")
        for op in app.operations.running:
            app.cancel_operation(op)
        await asyncio.gather(
            *(op.worker.wait() for op in app.operations if op.worker), return_exceptions=True
        )
    (out / f"{name}.svg").write_text(svg, encoding="utf-8")


async def make_screenshots(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nexus-shots-") as tmp:
        home = Path(tmp)
        old_home = os.environ.get("HOME")
        os.environ["HOME"] = str(home)  # paths show as ~/root/demo-data/...
        try:
            await build_demo(home / "root", now=DEMO_NOW)
            for name, size, _what in SHOTS:
                await _shoot(home / "root", name, size, out)
        finally:
            if old_home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = old_home
    return [out / f"{name}.svg" for name, _size, _what in SHOTS]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "screenshots"
    for path in asyncio.run(make_screenshots(out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
