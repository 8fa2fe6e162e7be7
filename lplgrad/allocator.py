"""How the lplgrad applications set up glibc's allocator, once, at start-up.

By default glibc returns freed memory to the system as soon as more than a few megabytes are
free at the top of the heap, and serves large blocks with fresh mappings: every training step
and query then faults in hundreds of megabytes of new pages (the activations, their gradients
and oneDNN's layout buffers), and zeroing them costs as much as a fifth of a step on a small
CPU. Keeping freed memory for reuse made the Fashion-MNIST backbone's training step 11-22% and
its LPLgrad query 31% faster on the 2-core machine of docs/benchmarks.md (ResNet-18 at width
64: 2% and 16%), at the price of holding up to ``trim_threshold`` bytes of freed memory.

Nothing is changed where the user chose an allocator: a ``MALLOC_*`` variable, an
``LD_PRELOAD`` (jemalloc, tcmalloc), ``LPLGRAD_MALLOC=default``, or a C library without mallopt.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def user_chose_allocator(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return (
        env.get("LPLGRAD_MALLOC", "") == "default"
        or bool(env.get("LD_PRELOAD"))
        or any(k.startswith("MALLOC_") for k in env)
    )


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Blocks under ``mmap_threshold`` come from the heap (32 MiB is glibc's maximum) and up to
    ``trim_threshold`` bytes of freed memory stay with the process. True when applied."""
    if not sys.platform.startswith("linux") or user_chose_allocator():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
