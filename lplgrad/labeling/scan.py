"""Finding the images of a user's folder, and checking that each one can be decoded.

The folder is only listed and read. What was found can be cached in a file outside it (the
labeling run's output folder), keyed by each file's path, size and modification time, so that a
later scan decodes only new or changed files: a folder of 100,000 images is listed, not read, on
every run after the first.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lplgrad.datasets.base import MAX_PIXELS, check_pixels
from lplgrad.records import atomic_write

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
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (size, modification time in ns)


def open_image(
    path: str | Path, mode: str, size: int | None = None, max_pixels: int | None = MAX_PIXELS
) -> Image.Image:
    """Decode an image fully in ``mode`` ("RGB" or "L"); JPEGs are decoded at a reduced scale
    no smaller than ``size`` (PIL's draft mode), which is all a ``size`` x ``size`` network needs.
    Larger than ``max_pixels`` at that scale: ``ValueError``, nothing decoded."""
    with Image.open(path) as img:
        if size is not None:
            img.draft(mode, (size, size))
        check_pixels(img, max_pixels)
        img.load()
        return img.convert(mode)


def _why(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ") or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


CACHE_VERSION = 1


def _load_cache(cache: Path | None, key: dict) -> dict[str, list]:
    """path -> [size, mtime_ns, reason or None] from a cache written for the same folder and settings."""
    if cache is None or not cache.is_file():
        return {}
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if data.get("key") == key else {}


def scan_folder(
    root: str | Path,
    mode: str = "RGB",
    size: int | None = None,
    check: bool = True,
    cache: str | Path | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> FolderScan:
    """Every image file under ``root`` (any depth; hidden files and folders ignored; symbolic links
    to folders not followed), each decoded once when ``check`` so that broken ones are listed
    in ``skipped`` instead of failing a run later. With ``cache`` (a file outside ``root``), a
    file whose size and modification time are as cached is not decoded again."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    cache = Path(cache) if cache is not None else None
    key = {
        "version": CACHE_VERSION,
        "root": str(root.resolve()),
        "mode": mode,
        "size": size,
        "check": check,
        "max_pixels": max_pixels,
    }
    known, seen = _load_cache(cache, key), {}
    scan = FolderScan(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        # plain strings, not a Path per file: a 100,000-image folder is listed on every round
        where = os.path.relpath(dirpath, root)
        prefix = "" if where == os.curdir else where.replace(os.sep, "/") + "/"
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(IMG_EXTENSIONS):
                continue
            full, rel = os.path.join(dirpath, name), prefix + name
            st = os.stat(full)
            entry = known.get(rel)
            if entry is None or entry[:2] != [st.st_size, st.st_mtime_ns]:
                problem = _decode_problem(Path(full), mode, size, max_pixels) if check else None
                entry = [st.st_size, st.st_mtime_ns, problem]
            seen[rel] = entry
            if entry[2] is not None:
                scan.skipped.append(Skipped(rel, entry[2]))
            else:
                scan.files.append(rel)
                scan.stats[rel] = (entry[0], entry[1])
    scan.files.sort()
    if cache is not None and seen != known:
        atomic_write(cache, json.dumps({"key": key, "files": seen}, separators=(",", ":")))
    return scan


def _decode_problem(path: Path, mode: str, size: int | None, max_pixels: int | None) -> str | None:
    """Why the image cannot be decoded, or None when it can."""
    try:
        open_image(path, mode, size, max_pixels)
    except Exception as e:  # noqa: BLE001 - any decoding failure means: skip this file
        return _why(e)
    return None
