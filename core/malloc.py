"""Keep the process's resident memory close to what the engine holds, and its buffers off
the page-fault path.

glibc gives each thread that allocates its own malloc arena (up to eight per core) and keeps
freed memory in it. The engine's reader, hasher and writer threads each pass MiB-sized
buffers through, so every arena grows its own high-water mark: two arenas instead of the
default lower the peak on every step and cost no time. This is what `MALLOC_ARENA_MAX=2`
does, set from inside the program so that it needs no wrapper script.

Those buffers (a chunk read, decompressed or decrypted: up to the chunker's 4 MiB; a batch
of chunks read from one pack; a pack being written) are above glibc's first mmap threshold
(128 KiB), and glibc's own rule for raising it, and for trimming what is freed at the top
of an arena, still hands many of them back to the kernel: each new one is then faulted in
page by page. Fixing both thresholds above those sizes keeps them in the arenas, to be
reused. What an arena may keep unused at its top is bounded by the trim threshold.
Figures: benchmarks/LATEST.md.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENAS = 2
#: Allocations from this size on are mmapped (and unmapped when freed): above a chunk, a read
#: batch and a pack being written (16 MiB and its last chunk).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of an arena beyond this is given back to the kernel.
TRIM_THRESHOLD = 32 * 1024 * 1024


def tune_malloc(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas and fix its mmap and trim thresholds (before threads
    start); False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own libc: no library search
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = [
        mallopt(_M_ARENA_MAX, arenas),
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ]
    return all(done)
