"""Reads stay fast while long operations run, and long operations beyond the server's limit
wait as queued jobs that start when a slot frees, all against a real server."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

MIB = 1 << 20
#: Each create reads FILES x FILE_MIB MiB: long enough that a read waiting behind the creates
#: (as it did when everything shared the loop's default executor) takes seconds.
FILES, FILE_MIB = 20, 20


def _big_tree(base: Path, files: int, mib_each: int) -> Path:
    """`files` files of `mib_each` MiB, made fast from repeated random 1 MiB blocks."""
    base.mkdir(parents=True, exist_ok=True)
    blocks = [os.urandom(MIB) for _ in range(4)]
    for i in range(files):
        with open(base / f"f{i:02d}.bin", "wb") as f:
            for j in range(mib_each):
                f.write(blocks[(i + j) % len(blocks)])
    return base


def _timed(client, url: str) -> float:
    started = time.monotonic()
    r = client.get(url)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    return elapsed


@pytest.mark.slow
def test_reads_stay_fast_and_creates_beyond_the_limit_queue(
    make_api, sample_tree, backup_via, poll
):
    srv = make_api(max_running=2)
    with srv.client() as c:
        # a project to read while the creates run
        meta = backup_via(c, "reads", sample_tree(srv.allowed / "small"))
        data = _big_tree(srv.allowed / "big", files=FILES, mib_each=FILE_MIB)
        answers = []
        for i in range(6):
            r = c.post(
                "/api/v1/backup/create", json={"project_id": f"big{i}", "data_dir": str(data)}
            )
            assert r.status_code == 202, r.text
            answers.append(r.json())
        started, queued = answers[:2], answers[2:]
        assert all(a["status"] == "pending" for a in started), started
        assert all(a.get("kind") == "create" and a["status"] == "queued" for a in queued), queued
        assert c.get(f"/api/v1/jobs/{queued[-1]['job_id']}").json()["status"] == "queued"

        def job(a: dict) -> dict:
            return c.get(f"/api/v1/jobs/{a['job_id']}").json()

        def busy() -> int:
            return srv.app.state.ctx.jobs.slots.busy

        latencies: list[float] = []
        while any(job(a)["status"] in ("queued", "running") for a in queued):
            assert busy() <= 2
            latencies.append(_timed(c, "/api/v1/backup/list/reads"))
            latencies.append(_timed(c, f"/api/v1/backup/info/reads/{meta['id']}"))
            latencies.append(_timed(c, "/api/v1/projects"))
        assert len(latencies) >= 9, "the creates ended before reads could be timed"
        assert statistics.median(latencies) < 0.1, sorted(latencies)[-10:]
        assert max(latencies) < 0.3, sorted(latencies)[-10:]

        ended = [
            poll(lambda a=a: job(a) if job(a)["status"] != "running" else None) for a in queued
        ]
        for j in ended:
            assert j["status"] == "succeeded", j
            assert j["backup"]["status"] == "completed" and j["backup_id"] == j["backup"]["id"]
            assert j["started_at"] >= j["created_at"] and j["finished_at"]
        for a in started:
            info = c.get(f"/api/v1/backup/info/{a['project_id']}/{a['id']}").json()
            assert info["status"] == "completed"
        sizes = {j["backup"]["size_bytes"] for j in ended}
        assert sizes == {FILES * FILE_MIB * MIB}
