"""Bytes a command writes: runs ``python -m MODULE ARGS...`` in this process and prints, at its
end, what /proc/self/io counted (``write_bytes``: bytes sent towards storage; ``wchar``: every
byte passed to write(), terminals and pipes included) and the wall time.

    python -m benchmarks.io_of.py lplgrad fit --config configs/fashion_mnist.yaml
"""

from __future__ import annotations

import runpy
import sys
import time


def io_counters() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def main() -> None:
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    before, t0 = io_counters(), time.perf_counter()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        after = io_counters()
        print(
            f"io_of: {module} wrote {(after['write_bytes'] - before['write_bytes']) / 2**20:.1f} MiB "
            f"(write_bytes; wchar {(after['wchar'] - before['wchar']) / 2**20:.1f} MiB) in "
            f"{time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
