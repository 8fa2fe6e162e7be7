"""TensorBoard projector files of a run: writing a round's embeddings without losing earlier
processes' entries (a resumed run), reading them back, and the thumbnails of the sprite."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from lplgrad.records import atomic_write

SPRITE_MAX = 8192  # the projector reads sprites up to 8192 x 8192 pixels
CONFIG = "projector_config.pbtxt"


def thumbnails(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...], n_total: int) -> Tensor:
    """Normalised images (N, C, H, W) back to [0, 1], three channels, small enough for one sprite."""
    c = x.shape[1]
    m = torch.tensor(mean[:c] if len(mean) >= c else mean[:1] * c).view(1, c, 1, 1)
    s = torch.tensor(std[:c] if len(std) >= c else std[:1] * c).view(1, c, 1, 1)
    img = (x * s + m).clamp(0, 1)
    if c == 1:
        img = img.expand(-1, 3, -1, -1)
    elif c != 3:
        img = img[:, :1].expand(-1, 3, -1, -1)
    side = max(1, min(32, SPRITE_MAX // max(1, math.ceil(math.sqrt(n_total)))))
    h, w = img.shape[-2:]
    if max(h, w) > side:  # shrink
        img = F.interpolate(
            img,
            size=(max(1, h * side // max(h, w)), max(1, w * side // max(h, w))),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    elif max(h, w) * 2 <= side:  # tiny images (8x8 digits): enlarge, pixels kept sharp
        k = side // max(h, w)
        img = F.interpolate(img, scale_factor=k, mode="nearest")
    return img.clamp(0, 1).contiguous()


def read_entries(logdir: Path) -> list[Any]:
    """The embeddings listed in ``logdir``'s projector config (none if missing or unreadable)."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    path = Path(logdir) / CONFIG
    if not path.is_file():
        return []
    cfg = ProjectorConfig()
    try:
        text_format.Parse(path.read_text(), cfg)
    except text_format.ParseError:
        return []
    return list(cfg.embeddings)


def write_entries(logdir: Path, entries: list[Any]) -> None:
    """The projector config listing ``entries`` (sorted by tensor file), written atomically."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    cfg = ProjectorConfig()
    cfg.embeddings.extend(sorted(entries, key=lambda e: e.tensor_path))
    atomic_write(Path(logdir) / CONFIG, text_format.MessageToString(cfg))


def add_embedding(
    writer, feats: Tensor, meta: list, imgs: Tensor, step: int, tag: str, header: list[str] | None, earlier: list[Any]
) -> None:
    """``writer.add_embedding``, keeping the entries of ``earlier`` (those of processes before
    this one: a resumed run) and replacing a (step, tag) that is logged again."""
    logdir = Path(writer.get_logdir())
    subdir = logdir / f"{str(step).zfill(5)}" / tag
    if subdir.exists():
        shutil.rmtree(subdir)
    writer.add_embedding(feats, metadata=meta, label_img=imgs, global_step=step, tag=tag, metadata_header=header)
    # the writer rewrites the config with only the entries it added itself (and lists a tag it
    # was given twice twice): one entry per tensor file, earlier processes' included
    entries = {e.tensor_path: e for e in earlier}
    entries.update({e.tensor_path: e for e in read_entries(logdir)})
    write_entries(logdir, list(entries.values()))


def read_embeddings(run: Path) -> list[dict]:
    """The projector's embeddings, in step order: name, step, vectors (N, D), metadata rows."""
    found = []
    for e in read_entries(run):
        tensors = run / e.tensor_path
        if not tensors.is_file():
            continue
        vectors = np.loadtxt(tensors, delimiter="\t", ndmin=2)
        rows: list[dict] = []
        if e.metadata_path and (run / e.metadata_path).is_file():
            with open(run / e.metadata_path, newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
        name, _, step = e.tensor_name.partition(":")
        found.append({"name": name, "step": int(step) if step.isdigit() else 0, "vectors": vectors, "meta": rows})
    return sorted(found, key=lambda d: d["step"])
