"""Whether Label Studio really serves the images that the tasks point at (live sync).

A task shows ``data.image``: the URL prefix and the image's path. With local-files serving, Label
Studio reads ``?d=<path>`` below its document root (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``),
and the default prefix, ``/data/local-files/?d=<folder name>/``, assumes that root is the image
folder's parent. When the root is higher up, Label Studio still accepts the project's Local Files
storage (any folder below the root is accepted) and every task is imported, but every image is
a 404 in the labeling page.

So the first live run, and every run whose Label Studio, project or URL prefix differs from the
last checked one, GETs one image of the folder at the URL a task would carry, before anything is
imported (before training, too). This needs no task: Label Studio's local-files view serves any
file below a Local Files storage of a project the key's user may open, whether or not a task
names it. That is the cleaner design of the three: checking after the import would leave a batch
of broken tasks to find and delete, and a probe task would have to be made and deleted again (a
run killed in between would leave it in the project). When the image is not served, the run
stops with one line naming the ``--url_prefix`` that works (found by trying the image folder's
path relative to each folder above it, which is what ``?d=`` is relative to) or the document
root to start Label Studio with; nothing was imported. When it is served, ``<out>/`` +
:data:`RECORD` says so, and later runs with the same Label Studio, project and prefix skip the
check.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from lplgrad.errors import LabelStudioError
from lplgrad.labeling.label_studio import image_url
from lplgrad.labeling.live import Fetched, LiveProject
from lplgrad.records import atomic_write

RECORD = "label_studio_served.json"
LOCAL_FILES = "/data/local-files/?d="
#: the first bytes of the image formats the labeling app reads (PPM/PGM: P1 ... P6)
MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
    *(b"P%d" % n for n in range(1, 7)),
)


def is_image(got: Fetched) -> bool:
    """HTTP 200 with an image: an ``image/...`` content type, or a body that starts as one."""
    return got.status == 200 and (got.content_type.startswith("image/") or got.head.startswith(MAGIC))


def what_came(got: Fetched) -> str:
    """A response in a few words: 'HTTP 404', 'HTTP 200 text/html, not an image'."""
    return f"HTTP {got.status}" + (
        f" {got.content_type or 'without a content type'}, not an image" if got.status == 200 else ""
    )


def _key(live: LiveProject, prefix: str) -> dict[str, object]:
    return {"label_studio": live.url, "project": live.id, "url_prefix": prefix}


def already_checked(record: Path, key: dict[str, object]) -> bool:
    """Whether ``record`` says the check passed for this Label Studio, project and prefix."""
    try:
        done = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(done, dict) and all(done.get(k) == v for k, v in key.items())


def document_roots(images: Path) -> list[tuple[Path, str]]:
    """Every folder above the image folder, nearest first, with the local-files URL prefix that
    is right when it is Label Studio's document root."""
    images = images.resolve()
    return [(root, f"{LOCAL_FILES}{quote(images.relative_to(root).as_posix())}/") for root in images.parents]


def not_served(live: LiveProject, images: Path, prefix: str, sample: str, got: Fetched) -> str:
    """The one line that says the images are not served, and the setting that fixes it."""
    url = image_url(prefix, sample)
    head = f"Label Studio at {live.url} does not serve the images of {images}: {url} gave {what_came(got)}"
    parent = images.resolve().parent
    if not prefix.startswith(LOCAL_FILES):
        return (
            f"{head}: give the --url_prefix under which the image folder is served (a task's image is "
            f"the prefix and the path relative to the folder); nothing was imported"
        )
    for root, candidate in document_roots(images):
        if candidate != prefix and is_image(live.fetch(image_url(candidate, sample))):
            return (
                f"{head}; its document root (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) is {root}: run again with "
                f"--url_prefix '{candidate}', or restart Label Studio with "
                f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={parent} and no --url_prefix; nothing was imported"
            )
    return (
        f"{head}, and no folder above it works as the document root: start Label Studio with "
        f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={parent} "
        "(the folder that holds the image folder) and no --url_prefix; nothing was imported"
    )


def check_served(live: LiveProject, images: Path, prefix: str, sample: str | None, out: Path) -> str | None:
    """Check that Label Studio serves ``sample`` (an image of the folder) at the URL a task
    would carry, once per Label Studio, project and prefix (see the module's docstring).
    Returns the line to print, or None when it was checked before (or there is no image);
    raises :class:`LabelStudioError` with the fix when the image is not served."""
    record, key = out / RECORD, _key(live, prefix)
    if sample is None or already_checked(record, key):
        return None
    url = image_url(prefix, sample)
    scheme = urlsplit(url).scheme
    if scheme not in ("", "http", "https"):
        said = f"Label Studio: a {scheme}: image URL is resolved by its cloud storage; not checked here"
    else:
        got = live.fetch(url)
        if not is_image(got):
            raise LabelStudioError(not_served(live, images, prefix, sample, got))
        said = f"Label Studio: serves the images ({url}: HTTP 200, {got.content_type or 'an image'})"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write(record, json.dumps({**key, "image": url, "checked_at": stamp}, indent=2) + "\n")
    return f"{said}; recorded in {record}, later runs skip the check"
