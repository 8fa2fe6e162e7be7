"""The tasks' images, fetched once into the state folder's image cache.

A task's image is wherever Label Studio keeps it, and the task data says where:

- ``/data/local-files/?d=...`` (a Local Files storage) and ``/data/upload/...`` (uploads):
  fetched from Label Studio with the API key;
- ``s3://``, ``gs://``, ``azure-blob://`` (cloud storage): through Label Studio's
  ``/tasks/<id>/presign/?fileuri=...``, with the key, following the redirect to the storage;
- ``http(s)://`` URLs: fetched as they are (with the key only when they point at Label Studio).

Each image is cached as ``images/<task id>-<hash of its URL><extension>``: a task whose URL
changes is fetched again, the files of tasks no longer in the project are removed. A task whose
image cannot be fetched is skipped and reported; Label Studio not answering at all stops the
training with one :class:`~lplgrad.errors.LabelStudioError` line (the worker retries later).
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from torchvision.datasets.folder import IMG_EXTENSIONS

from lplgrad.errors import LabelStudioError

CLOUD = ("s3://", "gs://", "azure-blob://")


def source_url(value: str, ls_url: str, task_id: int) -> tuple[str, bool]:
    """Where to GET a task's image, and whether Label Studio's key goes with it."""
    base = ls_url.rstrip("/")
    if value.startswith(CLOUD):
        uri = base64.urlsafe_b64encode(value.encode()).decode()
        return f"{base}/tasks/{task_id}/presign/?fileuri={uri}", True
    if value.startswith("/"):
        return base + value, True
    if value.startswith(("upload/", "data/")):
        return f"{base}/{value}" if value.startswith("data/") else f"{base}/data/{value}", True
    return value, urlsplit(value).netloc == urlsplit(base).netloc


def extension(value: str, content_type: str = "") -> str:
    """The image's file extension, from its name in the URL, else from the content type."""
    parts = urlsplit(value)
    names = [unquote(v) for v in parse_qs(parts.query).get("d", [])] + [unquote(parts.path)]
    for name in names:
        suffix = Path(name).suffix.lower()
        if suffix in IMG_EXTENSIONS:
            return suffix
    guessed = mimetypes.guess_extension(content_type.split(";")[0].strip()) if content_type else None
    return guessed if guessed in IMG_EXTENSIONS else ".img"


def cache_name(task_id: int, value: str) -> str:
    return f"{task_id}-{hashlib.md5(value.encode()).hexdigest()[:8]}"


class ImageCache:
    """The image folder of the state folder, filled from Label Studio (see the module docstring)."""

    def __init__(self, folder: Path, ls_url: str, headers: dict[str, str], get=None) -> None:
        self.folder, self.ls_url, self.headers = Path(folder), ls_url, headers
        if get is None:
            import httpx

            get = httpx.get
        self.get = get

    def fetch_all(self, images: dict[int, str]) -> tuple[dict[int, str], list[str]]:
        """Every task's image (task id -> its URL in the task data) on disk: -> (task id -> file
        name in the folder, lines about tasks skipped)."""
        files, skipped = self.fetch(images)
        have = {p.name for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")}
        for stale in have - set(files.values()):
            (self.folder / stale).unlink(missing_ok=True)
        return files, skipped

    def fetch(self, images: dict[int, str]) -> tuple[dict[int, str], list[str]]:
        """As :meth:`fetch_all`, without removing the files of other tasks."""
        self.folder.mkdir(parents=True, exist_ok=True)
        have = {p.stem: p.name for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")}
        files, skipped = {}, []
        for task, value in images.items():
            stem = cache_name(task, value) if isinstance(value, str) else ""
            name, why = (have[stem], "") if stem in have else self._download(task, value, stem)
            if name is None:
                skipped.append(f"task {task}: {value}: {why}")
            else:
                files[task] = name
        return files, skipped

    def _download(self, task: int, value: str, stem: str) -> tuple[str | None, str]:
        if not isinstance(value, str) or not value:
            return None, "no image URL in the task data"
        url, with_key = source_url(value, self.ls_url, task)
        try:
            got = self.get(url, headers=self.headers if with_key else {}, follow_redirects=True, timeout=60)
        except Exception as e:  # noqa: BLE001 - a network failure
            if with_key:
                raise LabelStudioError(f"Label Studio at {self.ls_url}: fetching {value} failed: {e}") from None
            return None, f"{type(e).__name__}: {e}"
        if got.status_code != 200:
            return None, f"HTTP {got.status_code}"
        name = stem + extension(value, got.headers.get("content-type", ""))
        tmp = self.folder / f".{name}.tmp{threading.get_ident()}"  # the worker and a request may both fetch
        tmp.write_bytes(got.content)
        tmp.replace(self.folder / name)
        return name, ""
