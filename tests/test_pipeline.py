"""The one pool restore, verify and copy feed: bounded, stopped by the first failure, and
raising the real failure rather than the cancel it caused."""

from __future__ import annotations

import threading
import time

import pytest

from core.errors import Cancelled
from core.pipeline import InPlace, Pipeline


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


def test_small_jobs_run_in_the_feeding_thread_until_one_waits_then_on_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`submit_small`: a job of many small files runs where it is fed while it is all
    CPU (no GIL passed between threads); one that waited sends the next ones to the pool."""
    monkeypatch.setattr(InPlace, "WAITED", 50.0)  # a loaded machine's descheduling is not a wait
    feeder = threading.get_ident()
    where: list[bool] = []

    def busy() -> None:
        where.append(threading.get_ident() == feeder)
        end = time.thread_time() + 0.002
        while time.thread_time() < end:
            pass

    def waits() -> None:
        where.append(threading.get_ident() == feeder)
        time.sleep(0.2)

    with Pipeline(2) as pipeline:
        for _ in range(3):
            assert pipeline.submit_small(busy)
        assert pipeline.submit_small(waits)
        for _ in range(4):
            assert pipeline.submit_small(busy)
    assert where[:4] == [True] * 4  # in place, the one that waited too
    assert where[4:] == [False] * 4  # then on the pool


def test_a_small_job_that_fails_in_place_fails_the_pipeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every job in place, whatever the machine's load: a job descheduled for a few ms would
    # otherwise send the next ones to the pool, where one may start before the failure lands
    monkeypatch.setattr(InPlace, "MIN_WAIT", 3600.0)
    ran: list[int] = []

    def job(i: int) -> None:
        if i == 2:
            raise ValueError("the disk said no")
        ran.append(i)

    with pytest.raises(ValueError, match="the disk said no"), Pipeline(2) as pipeline:
        for i in range(6):
            if not pipeline.submit_small(job, i):
                break
    assert ran == [0, 1]
