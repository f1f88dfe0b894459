"""The random bytes every nonce and pack pick come from (core/repo/random_pool.py): never
handed out twice, across threads and across a fork (a child that sealed with its parent's
buffered bytes would repeat the parent's nonces)."""

from __future__ import annotations

import os
import threading
from collections import Counter

from core.repo.random_pool import POOL, RandomPool


def test_bytes_are_never_handed_out_twice_across_threads() -> None:
    pool = RandomPool(block=64)
    got: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [pool.take(12) for _ in range(2000)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8000 and len(set(got)) == 8000
    assert all(len(g) == 12 for g in got)
    assert len(pool.take(5000)) == 5000  # more than a block at once


def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    POOL.take(12)  # the parent holds a partly used block when it forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next bytes, to the parent
        try:
            os.write(write, b"".join(POOL.take(12) for _ in range(8)))
        finally:
            os._exit(0)
    os.close(write)
    child = b""
    while chunk := os.read(read, 1024):
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    parent = b"".join(POOL.take(12) for _ in range(8))
    assert len(child) == 96
    assert {child[i : i + 12] for i in range(0, 96, 12)}.isdisjoint(
        {parent[i : i + 12] for i in range(0, 96, 12)}
    )


def test_below_is_in_range_and_takes_every_value() -> None:
    pool = RandomPool()
    seen = Counter(pool.below(3) for _ in range(3000))
    assert set(seen) == {0, 1, 2} and min(seen.values()) > 800
    assert {pool.below(1) for _ in range(10)} == {0}
