"""Finding the images of a user's folder, and checking that each one can be decoded.

Nothing here writes anywhere: the folder is only listed and read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS


@dataclass(frozen=True)
class Skipped:
    """An image file that could not be decoded, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class FolderScan:
    """The readable images of a folder (paths relative to it, '/'-separated, sorted) and the skipped ones."""

    root: Path
    files: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def open_image(path: str | Path, mode: str, size: int | None = None) -> Image.Image:
    """Decode an image fully in ``mode`` ("RGB" or "L"); JPEGs are decoded at a reduced scale
    no smaller than ``size`` (PIL's draft mode), which is all a ``size`` x ``size`` network needs."""
    with Image.open(path) as img:
        if size is not None:
            img.draft(mode, (size, size))
        img.load()
        return img.convert(mode)


def _why(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ") or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def scan_folder(root: str | Path, mode: str = "RGB", size: int | None = None, check: bool = True) -> FolderScan:
    """Every image file under ``root`` (any depth; hidden files and folders ignored; symbolic links
    to folders not followed), each decoded once when ``check`` so that broken ones are listed
    in ``skipped`` instead of failing a run later."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    scan = FolderScan(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(IMG_EXTENSIONS):
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if check:
                try:
                    open_image(full, mode, size)
                except Exception as e:  # noqa: BLE001 - any decoding failure means: skip this file
                    scan.skipped.append(Skipped(rel, _why(e)))
                    continue
            scan.files.append(rel)
    scan.files.sort()
    return scan
