"""Random bytes from the OS, drawn a block at a time: for the nonce of every sealed object and
the pack picked for every blob of an encrypted writer (docs/design.md §6).

Why a pool: `os.urandom` releases the GIL around its system call, so a backup's reader
threads, each sealing its own chunks, queued for the GIL again at every nonce and at every
pick, thousands of times a second. One call per block keeps the OS's randomness (every byte
is used once, as it came) without the queueing. A forked child forgets the block it
inherited, so a parent and its child never seal with the same nonce.
"""

from __future__ import annotations

import os
import threading

BLOCK = 4096


class RandomPool:
    """`take(n)`: n bytes from `os.urandom`, never handed out twice; thread-safe."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._forget()

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            end = self._pos + n
            if end > len(self._buf):
                self._buf = os.urandom(max(self._block, n))
                self._pos, end = 0, n
            out = self._buf[self._pos : end]
            self._pos = end
            return out

    def below(self, n: int) -> int:
        """A uniform integer in [0, n), as `secrets.randbelow` (rejection, so no bias)."""
        if n <= 0:
            raise ValueError("n must be positive")
        span = 1 << 64
        limit = span - span % n
        while True:
            value = int.from_bytes(self.take(8), "little")
            if value < limit:
                return value % n


POOL = RandomPool()
# The lock may be held by another thread at the fork, and the block is the parent's too.
os.register_at_fork(after_in_child=POOL._forget)
random_bytes = POOL.take
random_below = POOL.below
