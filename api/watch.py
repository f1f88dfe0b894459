"""What other processes do reaches the event streams: a cron `run-due`, the CLI, the TUI or
another host writing the same repository. While someone follows a project, it is polled:
its log file is tailed (the engine's follower, as the TUI's log pane does) and its backups
are listed again when its change token moves (one listing and a stat per backup: cheap).
The hub says each backup state and log line once, whoever saw it first."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from api.events import EventHub
from core.errors import NexusError
from core.logger import LogTail
from core.service import Engine

#: Seconds between two looks at the repository while a stream is open...
POLL_SECONDS = 1.0
#: ...or this many times as long as the last look took, if that is longer.
SLOWDOWN = 10


def log_payload(record: Any) -> dict[str, Any]:
    return {
        "time": record.time.isoformat(),
        "level": record.level,
        "project_id": record.project_id,
        "operation": record.operation,
        "backup_id": record.backup_id,
        "message": record.message,
    }


class Watcher:
    def __init__(self, manager: Engine, hub: EventHub) -> None:
        self.manager = manager
        self.hub = hub
        self._tails: dict[str, LogTail] = {}
        self._tokens: dict[str, str] = {}

    async def run(self, every: float = POLL_SECONDS) -> None:
        """Look every `every` seconds, or less often when a look is slow (a repository of
        many backups in a bucket): the looking takes at most a tenth of the server's time."""
        pause = every
        while True:
            await asyncio.sleep(pause)
            started = time.monotonic()
            followed = self.hub.projects()
            for gone in set(self._tails) - set(followed):
                self._tails.pop(gone, None)
                self._tokens.pop(gone, None)
            if followed:
                with contextlib.suppress(OSError, NexusError):
                    for project_id, event, payload in await asyncio.to_thread(self.poll, followed):
                        self.hub.publish(project_id, event, payload)
            pause = max(every, SLOWDOWN * (time.monotonic() - started))

    def poll(self, projects: list[str]) -> list[tuple[str, str, object]]:
        """The events of what changed since the last look (in a thread: it reads files)."""
        events: list[tuple[str, str, object]] = []
        tokens = self.manager.change_tokens_blocking()
        for project_id in projects:
            tail = self._tails.get(project_id)
            if tail is None:  # from now on: what was written before is history, not news
                tail = self.manager.logger.tail(project_id, from_end=True)
                self._tails[project_id] = tail
                self._tokens[project_id] = tokens.get(project_id, "")
            for record in tail.read_new():
                events.append((project_id, "log", log_payload(record)))
            token = tokens.get(project_id, "")
            if token != self._tokens.get(project_id):
                self._tokens[project_id] = token
                with contextlib.suppress(NexusError):
                    for meta in self.manager.list_blocking(project_id):
                        events.append((project_id, "backup", meta.model_dump(mode="json")))
        return events
