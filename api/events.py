"""Per-project fan-out of progress, log and job events to server-sent-event streams.

Each stream has its own bounded buffer; a client too slow to keep up loses the oldest events,
not the server its memory, and is told how many it lost (a `lagged` event). Publishing never
blocks and is safe from any thread, since the core's logger calls back from worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

#: Events buffered per stream before the oldest are dropped.
QUEUE_SIZE = 256
#: Streams open at once over all projects; more are refused (429).
MAX_SUBSCRIBERS = 64
#: A comment line at least this often keeps proxies from closing an idle stream (seconds).
KEEPALIVE_SECONDS = 15.0
#: Backup states and log lines remembered to say each once (see EventHub._first_time).
MAX_REMEMBERED = 4096


def _compact(payload: object) -> str:
    return json.dumps(payload, default=str, separators=(",", ":"))


@dataclass(eq=False)
class Subscription:
    """One client's stream: a bounded buffer that drops its oldest entries when full."""

    project_id: str
    buffer: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=QUEUE_SIZE))
    dropped: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, event: str, data: str) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
        self.buffer.append((event, data))
        self.wake.set()


class TooManySubscribers(Exception):
    pass


class EventHub:
    """Routes each event to the streams subscribed to its project."""

    def __init__(self, *, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._count = 0
        self._max = max_subscribers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._backups: dict[tuple[str, object], tuple[object, ...]] = {}
        self._lines: set[tuple[object, ...]] = set()
        self._order: deque[tuple[object, ...]] = deque()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server's loop, so other threads can hand events over to it."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def publish(self, project_id: str, event: str, payload: object) -> None:
        """Queue `payload` (a JSON-able value) as `event` for the project's streams."""
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):  # the loop is closing: nobody listens
                self._loop.call_soon_threadsafe(self.publish, project_id, event, payload)
            return
        if not self._first_time(project_id, event, payload):
            return
        subs = self._subs.get(project_id)
        if not subs:
            return
        data = _compact(payload)
        for sub in subs:
            sub.push(event, data)

    def _first_time(self, project_id: str, event: str, payload: object) -> bool:
        """A backup's state or a log record said once, whoever saw it first: this server's
        own operations, or the watcher reading what other processes wrote (api/watch.py)."""
        if event == "backup" and isinstance(payload, dict):
            key = (project_id, payload.get("id"))
            state = (payload.get("status"), payload.get("completed_at"), payload.get("removed_at"))
            if self._backups.get(key) == state:
                return False
            self._backups[key] = state
            if len(self._backups) > MAX_REMEMBERED:
                self._backups.pop(next(iter(self._backups)))
        elif event == "log" and isinstance(payload, dict):
            line = (
                project_id,
                payload.get("time"),
                payload.get("operation"),
                payload.get("message"),
            )
            if line in self._lines:
                return False
            self._lines.add(line)
            self._order.append(line)
            if len(self._order) > MAX_REMEMBERED:
                self._lines.discard(self._order.popleft())
        return True

    def projects(self) -> list[str]:
        """The projects someone is following now."""
        return [p for p, subs in self._subs.items() if subs]

    def check_capacity(self) -> None:
        """Refuse a new stream up front (the subscription itself starts with the stream)."""
        if self._count >= self._max:
            raise TooManySubscribers(f"at most {self._max} event streams may be open at once")

    def subscribe(self, project_id: str) -> Subscription:
        self.check_capacity()
        sub = Subscription(project_id)
        self._subs.setdefault(project_id, set()).add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.project_id)
        if subs and sub in subs:
            subs.discard(sub)
            self._count -= 1
            if not subs:
                del self._subs[sub.project_id]

    async def stream(
        self, project_id: str, *, keepalive: float = KEEPALIVE_SECONDS
    ) -> AsyncIterator[str]:
        """The SSE text of a project's events, until the client goes away.

        It subscribes on its first step, so a stream that never started holds nothing."""
        try:
            sub = self.subscribe(project_id)
        except TooManySubscribers as exc:  # lost a race with another new stream
            yield f"event: error\ndata: {_compact({'msg': str(exc)})}\n\n"
            return
        try:
            yield f"event: ready\ndata: {_compact({'project_id': sub.project_id})}\n\n"
            while True:
                if not sub.buffer:
                    sub.wake.clear()
                    try:
                        await asyncio.wait_for(sub.wake.wait(), timeout=keepalive)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                if sub.dropped:
                    yield f"event: lagged\ndata: {_compact({'dropped': sub.dropped})}\n\n"
                    sub.dropped = 0
                while sub.buffer:
                    event, data = sub.buffer.popleft()
                    yield f"event: {event}\ndata: {data}\n\n"
        finally:
            self.unsubscribe(sub)
