"""The feature cache (``data.feature_cache``, docs/features.md): every image's row of frozen
features (:class:`~lplgrad.nets.cut.FeatureCut`), computed once and kept in memory or in a
memory-mapped file, and the batches of rows the loaders serve in place of images.

A store is one split's rows, row i for image i (the pool index, or the test index), with what they
were computed from (:class:`CacheKey`): the images' identity, the frozen part of M (where it is
cut, and every tensor it reads) and the evaluation transform. A store whose key differs from
the run's is computed again, and the line the caller prints says why. Files go to a folder of
the run (``<run>/features/`` of ``fit``, ``<out>/features/`` of the labelling app, or
``data.feature_dir``): ``<name>.f32``, the rows as raw float32, and ``<name>.json``, the key and
the shape, written last (a store without it is incomplete and computed again).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from lplgrad.datasets import Images
from lplgrad.inference import run_eval
from lplgrad.nets.cut import FeatureCut
from lplgrad.records import atomic_write
from lplgrad.split import epoch_shard

VERSION = 1


def tensor_digest(named: Iterable[tuple[str, Tensor]]) -> str:
    """A hash of named tensors: their names, dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in named:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def text_digest(*parts: object) -> str:
    return hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=16).hexdigest()


def dataset_identity(dataset: object, images: Images, split: str) -> str:
    """A digest of a dataset split's images: their pixels where the dataset holds them as one
    array, else the dataset's settings (its class, its folder, ...) and size (files changed in
    place under the same settings go unnoticed then)."""
    if images.array is not None:
        return text_digest(split, tensor_digest([("pixels", images.array)]))
    return text_digest(split, len(images), repr(dataset))


def frozen_part_digest(cut: FeatureCut) -> str:
    """What the rows depend on in M: the plan (where the cut is, what a row holds) and every
    tensor the part before the cut reads: the state of the modules called before it, and the
    tensors the modules around it own directly (a class token, a position embedding)."""
    plan = cut.plan
    backbone = cut.backbone
    named = [(f"{n}.{k}", v) for n in plan.skipped for k, v in backbone.get_submodule(n).state_dict().items()]
    for name, m in backbone.named_modules():
        if name == "" or plan.first.startswith(name + "."):
            named += [(f"{name}.{k}", v) for k, v in m.named_parameters(recurse=False)]
            named += [(f"{name}.{k}", v) for k, v in m.named_buffers(recurse=False)]
    return text_digest(type(backbone).__name__, asdict(plan), tensor_digest(named))


@dataclass(frozen=True)
class CacheKey:
    """What a store's rows were computed from (each a digest)."""

    images: str
    frozen: str
    transform: str

    def why_not(self, saved: dict | None) -> str | None:
        """Why a store saved with ``saved`` does not hold these rows (None: it does)."""
        if saved is None:
            return "none yet"
        if saved.get("version") != VERSION:
            return "written by another version"
        for field, what in (
            ("images", "the images changed"),
            ("frozen", "the frozen part of the backbone (its weights, or where it is cut) changed"),
            ("transform", "the evaluation transform changed"),
        ):
            if saved.get(field) != getattr(self, field):
                return what
        return None


@dataclass
class Store:
    """One split's rows (n, width), and what to tell the user about them."""

    rows: Tensor
    line: str


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def open_store(
    folder: Path | None, name: str, key: CacheKey, n: int, width: int, fill: Callable[[Tensor], None]
) -> Store:
    """The rows of split ``name``: read from ``folder`` when its store has this key and shape,
    else made by ``fill`` (which writes every row of the (n, width) tensor it is given), in a
    memory-mapped file of ``folder`` or, without a folder, in memory."""
    t0 = time.monotonic()
    if folder is None:
        rows = torch.empty(n, width)
        fill(rows)
        return Store(rows, f"computed for {n:,} images in {time.monotonic() - t0:.1f} s, kept in memory")
    data, meta = folder / f"{name}.f32", folder / f"{name}.json"
    saved = _read_meta(meta)
    why = key.why_not(saved)
    if why is None and (saved.get("rows"), saved.get("width")) != (n, width):
        why = "the number of images changed"
    if why is None and not (data.is_file() and data.stat().st_size == 4 * n * width):
        why = "its file is missing or incomplete"
    if why is None:
        return Store(_mapped(data, n, width), f"reused for {n:,} images ({data})")
    folder.mkdir(parents=True, exist_ok=True)
    meta.unlink(missing_ok=True)  # the store is incomplete until its key is written again
    partial = folder / f".{name}.f32.partial"
    partial.unlink(missing_ok=True)
    if n * width:
        fill(torch.from_file(str(partial), shared=True, size=n * width, dtype=torch.float32).view(n, width))
    else:
        partial.touch()
    os.replace(partial, data)
    atomic_write(meta, json.dumps({"version": VERSION, **asdict(key), "rows": n, "width": width}) + "\n")
    size = data.stat().st_size / 2**20
    line = f"computed for {n:,} images in {time.monotonic() - t0:.1f} s ({why}), in {data} ({size:.1f} MiB)"
    return Store(_mapped(data, n, width), line)


def _mapped(path: Path, n: int, width: int) -> Tensor:
    """The rows of a store's file, memory-mapped (pages are read when touched; never written)."""
    if n * width == 0:
        return torch.empty(n, width)
    return torch.from_file(str(path), shared=False, size=n * width, dtype=torch.float32).view(n, width)


def fill_rows(cut: FeatureCut, batches: Iterable, device: torch.device, out: Tensor) -> None:
    """``out`` (n, width) filled with the rows of the images of ``batches`` (in order): the
    feature pass, M in eval mode (:func:`lplgrad.inference.run_eval`)."""
    start = [0]

    def step(x: Tensor, _) -> None:
        rows = cut.features(x)  # (B, width)
        out[start[0] : start[0] + len(rows)] = rows.float().cpu()
        start[0] += len(rows)

    run_eval(cut, batches, device, step)
    if start[0] != len(out):
        raise RuntimeError(f"the feature pass made {start[0]} rows for {len(out)} images")


class RowBatches:
    """Batches of cached rows and their labels, in place of a loader of images. Quacks like a
    DataLoader for Lightning (``len``, iteration, ``sampler.set_epoch``), as
    :class:`~lplgrad.augment.TensorBatches` does.

    Args:
        rows: (N, width), every image's row; targets: (N,) labels, or None (every label -1).
        indices: the rows to serve.
        order: ``in_order``; ``epoch``: shuffled by (seed, epoch) as the experiment's training
            loader (:func:`lplgrad.split.epoch_permutation`), this process's ``rank::world``
            share padded by repetition as Lightning's distributed sampler pads it; ``random``:
            shuffled from torch's global generator, as a DataLoader with ``shuffle=True``.
        drop_last: leave out the last, smaller batch.
    """

    def __init__(
        self,
        rows: Tensor,
        targets: Tensor | None,
        indices: Tensor,
        batch_size: int,
        order: str = "in_order",
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
    ) -> None:
        if order not in ("in_order", "epoch", "random"):
            raise ValueError(f"order must be 'in_order', 'epoch' or 'random', got {order!r}")
        self.rows, self.indices = rows, torch.as_tensor(indices, dtype=torch.long)
        self.targets = targets if targets is not None else torch.full((len(rows),), -1, dtype=torch.long)
        self.batch_size, self.order, self.drop_last = batch_size, order, drop_last
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.sampler = self  # Lightning calls dataloader.sampler.set_epoch(epoch) every epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> Tensor:
        if self.order == "random":
            return self.indices[torch.randperm(len(self.indices))]
        if self.order == "in_order":
            return self.indices
        return epoch_shard(self.indices, self.seed, self.epoch, self.rank, self.world)

    def __len__(self) -> int:
        n = len(self.indices) if self.order != "epoch" or self.world == 1 else math.ceil(len(self.indices) / self.world)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._order()
        if self.drop_last:
            order = order[: len(order) - len(order) % self.batch_size]
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            yield self.rows[idx], self.targets[idx]


def as_feature_cut(net: nn.Module) -> FeatureCut:
    if not isinstance(net, FeatureCut):
        raise TypeError("the feature cache needs the learner built with model.feature_cache true (a FeatureCut as M)")
    return net
