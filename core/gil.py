"""A shorter GIL switch interval while a restore's writers run.

A restore's threads give the GIL away several times per chunk (pread, zstd, AES, BLAKE3,
pwrite all release it for a fraction of a millisecond), and each then waits to take it back
until the thread holding it is asked to let go: up to the switch interval, 5 ms by default.
With each release that short, much of their time went to that wait. A backup is the other
way round (its threads spend longer in Python between releases, and more forced switches cost
it more than they save): it keeps the default. The interval is one setting for the whole
process, so the shortest one asked for holds while any restore runs (a backup the service
runs beside a restore runs with it too), and the value found before the first is put back
when the last one ends.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The switch interval while a restore writes (seconds); measured in benchmarks/LATEST.md.
RESTORE_SWITCH_INTERVAL = 0.0005

_lock = threading.Lock()
_holders = 0
#: The interval found before the first holder lowered it; None when it was left as found.
_saved: float | None = None


@contextmanager
def quick_handoffs(interval: float = RESTORE_SWITCH_INTERVAL) -> Iterator[None]:
    """Run the block with the GIL switch interval at most `interval` seconds."""
    global _holders, _saved
    with _lock:
        _holders += 1
        current = sys.getswitchinterval()
        if interval < current:
            if _saved is None:
                _saved = current
            sys.setswitchinterval(interval)
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _saved is not None:
                sys.setswitchinterval(_saved)
                _saved = None
