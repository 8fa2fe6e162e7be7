"""A tiny folder of coloured shapes for the labeling app's tests, and one labeling run over it."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from lplgrad.label import cli_main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "label_folder.yaml")
CLASSES = ("circle", "square", "triangle")
B = 5


def make_shapes(root: Path, n: int = 39, size: int = 16) -> dict[str, str]:
    """n images of 3 classes (PNG and JPEG, nested folders), a corrupt PNG and a text file; -> path: class."""
    g = torch.Generator().manual_seed(0)
    truth = {}
    for i in range(n):
        cls = CLASSES[i % 3]
        colour = tuple(int(v) for v in torch.randint(80, 256, (3,), generator=g))
        img = Image.new("RGB", (size, size), (10, 10, 10))
        d, a, b = ImageDraw.Draw(img), size // 5, size - size // 5
        if cls == "circle":
            d.ellipse([a, a, b, b], fill=colour)
        elif cls == "square":
            d.rectangle([a, a, b, b], fill=colour)
        else:
            d.polygon([(size // 2, a), (a, b), (b, b)], fill=colour)
        rel = f"{['set_a', 'set_b/deeper'][i % 2]}/img_{i:03d}.{'png' if i % 4 < 2 else 'jpg'}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / rel)
        truth[rel] = cls
    (root / "set_a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (root / "set_a" / "notes.txt").write_text("not an image either\n")
    return truth


def write_labels(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))


#: a labelling run sized for the tests: CPU, no bar, one epoch, a width-2 ResNet on 16x16 images
TINY_LABEL = "--trainer.accelerator cpu --trainer.enable_progress_bar false --trainer.max_epochs 1 --model.backbone.init_args.width 2 --data.image_size 16".split()


def append(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "a") as f:
        f.write("".join(f"{p},{c}\n" for p, c in rows))


def run(images: Path, out: Path, *extra: str) -> dict:
    return cli_main(
        [
            "--config",
            CONFIG,
            "--images",
            str(images),
            "--out",
            str(out),
            *TINY_LABEL,
            "--data.query_size",
            str(B),
            "--data.min_labels",
            "6",
            *extra,
        ]
    )


def read_to_label(round_dir: Path) -> list[dict]:
    with open(round_dir / "to_label.csv", newline="") as f:
        return list(csv.DictReader(f))
