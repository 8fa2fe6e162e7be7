"""The labeling app on a folder of 100,000 images: scanning it the first time, again with the
scan cache, and scoring every unlabeled image with memory that stays flat.

It generates ``--n`` small PNG images (32x32, random shapes in 100 sub-folders; reused when
``--folder`` already holds them), then measures, each in this process:

1. the first scan (every image decoded once) and the second (the cache: only listed and
   compared by size and modification time), with the peak resident memory of each;
2. scoring the whole unlabeled pool with LPLgrad's query (an untrained width-4 ResNet-18 at
   32x32; the pool is streamed from disk) for --score-sizes images, with the time and the peak
   extra memory of each: memory does not grow with the pool.

    python -m benchmarks.folder_scale.py --folder /tmp/folder100k       # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from benchmarks.common import PeakMemory, add_malloc_option, describe, malloc_setting


def generate(folder: Path, n: int) -> float:
    """n 32x32 PNGs (a coloured square on noise) in 100 sub-folders; seconds taken (0 if present)."""
    existing = sum(1 for _ in folder.rglob("*.png")) if folder.is_dir() else 0
    if existing >= n:
        return 0.0
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for i in range(existing, n):
        img = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
        a, b = sorted(rng.integers(2, 30, 2))
        img[a:b, a:b] = rng.integers(100, 256, 3, dtype=np.uint8)
        d = folder / f"part_{i % 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"img_{i:06d}.png")
    return time.perf_counter() - t0


def timed_scan(folder: Path, cache: Path) -> tuple[float, int, float]:
    """(seconds, images found, peak extra MiB) of one scan with the cache."""
    from lplgrad.labeling.scan import scan_folder

    with PeakMemory(torch.device("cpu")) as mem:
        t0 = time.perf_counter()
        scan = scan_folder(folder, "RGB", 32, cache=cache)
        seconds = time.perf_counter() - t0
    return seconds, len(scan.files), mem.peak / 2**20


def timed_scoring(folder: Path, cache: Path, n: int) -> tuple[float, float]:
    """(seconds, peak extra MiB) of LPLgrad's query over ``n`` unlabeled images of the folder."""
    from lplgrad.labeling.data import LabelFolderData
    from lplgrad.module import ActiveLearner
    from lplgrad.nets import ResNet18
    from lplgrad.query import query
    from lplgrad.strategies import LPLgrad

    dm = LabelFolderData(
        str(folder),
        classes="a,b",
        image_size=32,
        subset_size=n,
        eval_batch_size=256,
        scan_cache=str(cache),
        query_size=20,
    )
    learner = ActiveLearner(backbone=lambda c, i: ResNet18(c, i, 4), num_classes=2, in_channels=3)
    strategy = LPLgrad(chunk_size=256)
    with PeakMemory(torch.device("cpu")) as mem:
        t0 = time.perf_counter()
        result = query(learner, strategy, dm.query_pool(), 1, 20)
        seconds = time.perf_counter() - t0
    assert len(result.candidates) == n and len(result.selected) == 20
    return seconds, mem.peak / 2**20


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--folder", type=Path, default=None, help="where the images are (generated when missing)")
    ap.add_argument("--score-sizes", type=int, nargs="+", default=[10_000, 100_000])
    add_malloc_option(ap)
    a = ap.parse_args(argv)

    print(describe(torch.device("cpu"), malloc_setting(a.malloc)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.folder or Path(tmp) / "images"
        made = generate(folder, a.n)
        print(
            f"folder: {a.n} PNG images, 32x32, in 100 sub-folders" + (f" (generated in {made:.0f} s)" if made else "")
        )
        cache = Path(tmp) / "out" / "scan_cache.json"
        for name in ("first scan (decodes every image)", "second scan (scan cache)"):
            seconds, found, peak = timed_scan(folder, cache)
            print(f"{name:<34}: {seconds:7.1f} s for {found} images, peak extra memory {peak:7.1f} MiB")
        print(f"scan cache: {cache.stat().st_size / 2**20:.1f} MiB")
        timed_scoring(folder, cache, 256)  # warm-up: the allocator's first pages are not the pool's
        for n in a.score_sizes:
            seconds, peak = timed_scoring(folder, cache, min(n, a.n))
            print(
                f"LPLgrad query over {min(n, a.n):>6} unlabeled images: {seconds:7.1f} s "
                f"({min(n, a.n) / seconds:6.0f} images/s), peak extra memory {peak:7.1f} MiB"
            )


if __name__ == "__main__":
    main()
