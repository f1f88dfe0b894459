"""The one pool restore, verify and copy feed: bounded, stopped by the first failure, and
raising the real failure rather than the cancel it caused."""

from __future__ import annotations

import threading
import time

import pytest

from core.errors import Cancelled
from core.pipeline import Pipeline


def test_at_most_workers_times_depth_jobs_wait_or_run() -> None:
    lock = threading.Lock()
    live = peak = 0

    def job() -> None:
        nonlocal live, peak
        with lock:
            live += 1
            peak = max(peak, live)
        time.sleep(0.002)
        with lock:
            live -= 1

    done = []
    with Pipeline(2, depth=3) as pipeline:
        for i in range(60):
            assert pipeline.submit(job)
            done.append(i)
    assert len(done) == 60 and peak <= 2


def test_the_first_failure_stops_the_feeder_and_is_raised_not_the_cancel() -> None:
    cancel = threading.Event()
    ran: list[int] = []

    def job(i: int) -> None:
        if i == 3:
            raise OSError("disk on fire")
        if cancel.is_set():
            raise Cancelled("cancelled")
        ran.append(i)

    with (
        pytest.raises(OSError, match="disk on fire"),
        Pipeline(1, depth=1, on_failure=cancel.set) as pipeline,
    ):
        for i in range(1000):
            if cancel.is_set():
                raise Cancelled("the feeder saw the cancel")
            if not pipeline.submit(job, i):
                break
    assert cancel.is_set() and len(ran) < 1000
