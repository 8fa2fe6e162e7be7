"""``python -m lplgrad.predict``: the class of every image of a folder, by the network of a labeling
round, written to a CSV.

The network is the round's M, rebuilt from its ``config.yaml`` and ``model.ckpt``
(:mod:`~lplgrad.labeling.trained`); the images are those the labeling app would scan (any depth,
the same file types, hidden files and folders left out), each decoded and transformed as the
labeling app does for evaluation. The network runs in eval mode without gradients, batch by batch.
An image that cannot be decoded is skipped and listed; every other problem stops the command with
one ``lplgrad.predict: error:`` line (:func:`lplgrad.guard.guarded`).

CSV columns: ``path`` (relative to the folder, ``/``-separated), ``predicted`` (the most probable
class), ``probability`` (its softmax probability), then ``top1_class``, ``top1_probability``, ...
for the ``--top_k`` most probable classes (at most the number of classes), most probable first.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lplgrad.errors import ConfigError, DataError
from lplgrad.guard import guarded
from lplgrad.inference import eval_mode
from lplgrad.labeling.report import listed, plural, say
from lplgrad.labeling.scan import Skipped, scan_folder
from lplgrad.labeling.trained import InputSpec, TrainedModel, add_run_argument, load_trained, probabilities
from lplgrad.records import atomic_write

PROG = "lplgrad.predict"


def reason_of(e: BaseException) -> str:
    """An exception as a short one-line reason."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


class FolderImages(Dataset):
    """The images ``files`` (relative to ``root``) as the network's inputs: item ``i`` is
    ``(i, tensor, None)``, or ``(i, None, reason)`` when the image cannot be decoded."""

    def __init__(self, root: Path, files: list[str], spec: InputSpec) -> None:
        self.root, self.files, self.spec = root, files, spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, Tensor | None, str | None]:
        try:
            return i, self.spec.load(self.root / self.files[i]), None
        except Exception as e:  # noqa: BLE001 - any decoding failure means: skip this image
            return i, None, reason_of(e)


@dataclass
class Batch:
    """The readable images of a loader batch, (B, C, H, W) or None, their indices, and the failed ones."""

    x: Tensor | None
    indices: list[int]
    failed: list[tuple[int, str]]


def collate(items: list[tuple[int, Tensor | None, str | None]]) -> Batch:
    good = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, why) for i, x, why in items if x is None]
    x = torch.stack([x for _, x in good]) if good else None
    return Batch(x, [i for i, _ in good], failed)


@dataclass
class Predictions:
    """The predicted images (paths, in folder order), their probabilities (N, classes), the skipped ones."""

    files: list[str]
    probs: Tensor
    skipped: list[Skipped] = field(default_factory=list)


def predict_folder(
    tm: TrainedModel, root: Path, files: list[str], device: torch.device, batch_size: int, num_workers: int = 0
) -> Predictions:
    """M's class probabilities for each readable image of ``files``, batch by batch on ``device``
    (eval mode, no gradients); the network is moved back to the CPU afterwards."""
    loader = DataLoader(
        FolderImages(root, files, tm.spec), batch_size=batch_size, num_workers=num_workers, collate_fn=collate
    )
    done, probs, skipped = [], [], []
    net = tm.net.to(device)
    try:
        with eval_mode(net), torch.no_grad():
            for batch in loader:
                skipped += [Skipped(files[i], why) for i, why in batch.failed]
                if batch.x is not None:
                    probs.append(probabilities(net, batch.x.to(device), len(tm.classes)).cpu())
                    done += [files[i] for i in batch.indices]
    finally:
        net.cpu()
    return Predictions(done, torch.cat(probs) if probs else torch.zeros(0, len(tm.classes)), skipped)


def csv_header(top_k: int) -> list[str]:
    return ["path", "predicted", "probability"] + [
        f"top{r}_{what}" for r in range(1, top_k + 1) for what in ("class", "probability")
    ]


def csv_rows(pred: Predictions, classes: list[str], top_k: int) -> list[list[str]]:
    """One row per predicted image: path, class, probability, then the ``top_k`` best (class, probability)."""
    p, idx = pred.probs.topk(top_k, dim=1)
    rows = []
    for path, ps, cs in zip(pred.files, p.tolist(), idx.tolist()):
        top = [v for c, q in zip(cs, ps) for v in (classes[c], f"{q:.6f}")]
        rows.append([path, classes[cs[0]], f"{ps[0]:.6f}", *top])
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def resolve_device(name: str) -> torch.device:
    """``--device``: cpu, cuda or cuda:N (only where a CUDA device is there), or any other torch device."""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device {name}: {reason_of(e)}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {name}: no CUDA device here (torch.cuda.is_available() is false): use cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name}: there are {count} CUDA devices (cuda:0 to cuda:{count - 1})")
    return device


def list_images(root: Path, spec: InputSpec) -> list[str]:
    """The image files under ``root`` as the labeling app finds them (not decoded yet)."""
    try:
        files = scan_folder(root, spec.mode, spec.image_size, check=False).files
    except FileNotFoundError as e:
        raise DataError(str(e)) from None
    if not files:
        raise DataError(
            f"no image in {root} (PNG, JPEG, BMP, TIFF, WebP, PPM/PGM, ... at any depth; hidden files and folders "
            "are left out)"
        )
    return files


def check_sizes(cfg) -> None:
    for name in ("top_k", "batch_size"):
        if cfg[name] < 1:
            raise ConfigError(f"--{name} must be positive, got {cfg[name]}")
    if cfg.num_workers < 0:
        raise ConfigError(f"--num_workers must be 0 or more, got {cfg.num_workers}")


def run(cfg) -> dict[str, Any]:
    """Predict for the folder, write the CSV, print what was done; returns the summary."""
    check_sizes(cfg)
    if Path(cfg.csv).is_dir():
        raise ConfigError(f"--csv {cfg.csv} is a folder: name the CSV file to write")
    device = resolve_device(cfg.device)
    tm = load_trained(cfg.run)
    say(f"Model: {tm.describe()}")
    root = Path(cfg.images)
    files = list_images(root, tm.spec)
    t0 = time.monotonic()
    pred = predict_folder(tm, root, files, device, cfg.batch_size, cfg.num_workers)
    seconds = time.monotonic() - t0
    if not pred.files:
        raise DataError(f"none of the {len(files)} images in {root} can be read (first: {pred.skipped[0]})")
    top_k = min(cfg.top_k, len(tm.classes))
    out = Path(cfg.csv)
    write_csv(out, csv_header(top_k), csv_rows(pred, tm.classes, top_k))
    counts = Counter(tm.classes[i] for i in pred.probs.argmax(1).tolist())
    say(
        f"Predicted: {plural(len(pred.files), 'image')} of {len(files)} in {root} in {seconds:.1f} s "
        f"({device}, batch {cfg.batch_size}): " + ", ".join(f"{c} {counts[c]}" for c in tm.classes)
    )
    if pred.skipped:
        say(f"Skipped {plural(len(pred.skipped), 'unreadable image')}:")
        listed(pred.skipped)
    say(f"Wrote: {out}  ({', '.join(csv_header(top_k))})")
    return {
        "csv": str(out),
        "checkpoint": str(tm.checkpoint),
        "classes": tm.classes,
        "predicted": len(pred.files),
        "counts": {c: counts[c] for c in tm.classes},
        "skipped": [{"path": s.path, "reason": s.reason} for s in pred.skipped],
        "seconds": seconds,
    }


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m lplgrad.predict",
        description="Classify every image of a folder with a labeling round's network, into a CSV (docs/labeling.md).",
        exit_on_error=False,
    )
    add_run_argument(p)
    p.add_argument("--images", type=str, required=True, help="The folder of images to classify (any depth).")
    p.add_argument("--csv", type=str, default="predictions.csv", help="The CSV to write.")
    p.add_argument("--top_k", type=int, default=3, help="How many of the most probable classes to list per image.")
    p.add_argument("--batch_size", type=int, default=64, help="Images per batch.")
    p.add_argument("--device", type=str, default="cpu", help="cpu, or cuda / cuda:N where there is a GPU.")
    p.add_argument("--num_workers", type=int, default=0, help="Processes decoding images (0: this one).")
    return p


def cli_main(args: list[str] | None = None) -> dict[str, Any]:
    """Parse ``args`` (default ``sys.argv[1:]``), predict, write the CSV; returns the summary.
    Expected failures stop with one ``lplgrad.predict: error:`` line and their exit code."""
    return guarded(PROG, args, lambda: run(build_parser().parse_args(args)))
