"""The server-sent event stream of a project, and the bounded fan-out behind it."""

from __future__ import annotations

import asyncio
import json
import time

from api.events import QUEUE_SIZE, EventHub


def _events(lines):
    """(event, data) pairs from SSE lines; comments skipped."""
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            yield event, json.loads(line[len("data: ") :])
            event = None


def test_stream_shows_progress_logs_and_the_backup_finishing(api, client, project, sample_tree):
    src = sample_tree(api.allowed / project / "src")
    seen: dict[str, list] = {}
    deadline = time.monotonic() + 60
    with api.client() as sse, sse.stream("GET", f"/api/v1/events/{project}") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = _events(stream.iter_lines())
        assert next(events) == ("ready", {"project_id": project})
        r = client.post("/api/v1/backup/create", json={"project_id": project, "data_dir": str(src)})
        assert r.status_code == 202
        backup_id = r.json()["id"]
        for event, data in events:
            seen.setdefault(event, []).append(data)
            if event == "backup" and data["status"] == "completed":
                break
            assert time.monotonic() < deadline, "no completion event"
    assert all(p["project_id"] == project for p in seen.get("progress", []))
    assert any(p["phase"] == "done" for p in seen["progress"])
    assert any(rec["backup_id"] == backup_id for rec in seen["log"])
    assert seen["backup"][-1]["id"] == backup_id


def test_stream_sees_a_backup_another_process_makes(api, client, project, sample_tree):
    """A backup made by the CLI in another process (a cron run-due, say): its log lines and
    its completed metadata reach the stream, each once."""
    import os
    import subprocess
    import sys

    src = sample_tree(api.allowed / project / "src2")
    env = {**os.environ, "NEXUS_BACKUP_ROOT": str(api.root)}
    seen: dict[str, list] = {}
    deadline = time.monotonic() + 60
    with api.client() as sse, sse.stream("GET", f"/api/v1/events/{project}") as stream:
        events = _events(stream.iter_lines())
        assert next(events) == ("ready", {"project_id": project})
        time.sleep(1.5)  # the watcher has taken its first look: what follows is news
        made = subprocess.run(
            [sys.executable, "-m", "cli", "--json", "create", project, str(src)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, made.stderr
        backup_id = json.loads(made.stdout)["id"]
        for event, data in events:
            seen.setdefault(event, []).append(data)
            if event == "backup" and data["id"] == backup_id and data["status"] == "completed":
                break
            assert time.monotonic() < deadline, "the other process's backup never showed"
    assert any(rec["backup_id"] == backup_id for rec in seen.get("log", []))
    completed = [b for b in seen["backup"] if b["id"] == backup_id and b["status"] == "completed"]
    assert len(completed) == 1


def test_slow_subscriber_loses_oldest_events_and_is_told():
    async def scenario():
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        stream = hub.stream("p")
        assert (await anext(stream)).startswith("event: ready")
        reader = asyncio.ensure_future(anext(stream))  # subscribes, then waits for events
        await asyncio.sleep(0)
        for i in range(QUEUE_SIZE + 10):
            hub.publish("p", "progress", {"i": i})
        hub.publish("other", "progress", {"i": -1})  # not this project's
        first = await reader
        assert first == 'event: lagged\ndata: {"dropped":10}\n\n'
        rest = [await anext(stream) for _ in range(QUEUE_SIZE)]
        assert rest[0] == 'event: progress\ndata: {"i":10}\n\n'
        assert rest[-1] == f'event: progress\ndata: {{"i":{QUEUE_SIZE + 9}}}\n\n'
        await stream.aclose()
        assert hub._count == 0

    asyncio.run(scenario())


def test_publish_from_another_thread_reaches_the_loop():
    async def scenario():
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        stream = hub.stream("p")
        await anext(stream)
        reader = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        await asyncio.to_thread(hub.publish, "p", "log", {"message": "hi"})
        assert await asyncio.wait_for(reader, 5) == 'event: log\ndata: {"message":"hi"}\n\n'
        await stream.aclose()

    asyncio.run(scenario())
