"""Helpers for driving the TUI in pilot tests: wait for workers, never sleep a fixed time."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from textual.pilot import Pilot

from tui.app import NexusApp
from tui.screens.main import MainScreen


async def settle(pilot: Pilot) -> None:
    """Let messages flow and every running worker (loads, operations) finish, until the app
    is quiet: no worker running across two turns of the event loop (a worker that finishes
    may post a message that starts another). A worker's failure or cancellation is the
    test's to check, not a reason to stop waiting."""
    quiet = 0
    for _ in range(200):
        await pilot.pause()
        running = [w for w in pilot.app.workers if w.is_running]
        if not running:
            quiet += 1
            if quiet >= 3:
                return
            continue
        quiet = 0
        await asyncio.gather(*(w.wait() for w in running), return_exceptions=True)
    raise AssertionError("the app never settled: workers kept running")


async def wait_for(pilot: Pilot, condition: Callable[[], Any], timeout: float = 20.0) -> None:
    """Poll `condition` between event-loop turns until it holds (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await pilot.pause(0.02)


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*[_key(c) for c in text])


def _key(char: str) -> str:
    return {
        " ": "space",
        "/": "slash",
        ".": "full_stop",
        ":": "colon",
        "=": "equals_sign",
        "-": "minus",
        "_": "underscore",
        ",": "comma",
    }.get(char, char)


def plain(widget: Any) -> str:
    """The text a Static or Label shows, without styles (Rich renderables included)."""
    content = widget.content
    if isinstance(content, str):
        return content
    if hasattr(content, "plain"):
        return content.plain
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    console.print(content)
    return console.export_text()


def main(app: NexusApp) -> MainScreen:
    return app.main


def notes(app: NexusApp) -> list[str]:
    """Titles and messages of every notification so far."""
    return [f"{n.title}: {n.message}" for n in app._notifications]
