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
import io
import mimetypes
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image
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


def _names(value: str) -> list[str]:
    """The file names a URL carries: Local Files' ``d``, the storage URI in Label Studio's
    ``fileuri`` (base64, or quoted), and its path."""
    parts = urlsplit(value)
    query = parse_qs(parts.query)
    names = [unquote(v) for v in query.get("d", [])]
    for uri in query.get("fileuri", []):
        try:
            names.append(base64.urlsafe_b64decode(uri.encode()).decode())
        except (ValueError, UnicodeDecodeError):
            names.append(unquote(uri))
    return [*names, unquote(parts.path)]


def _sniffed(content: bytes) -> str | None:
    """The extension of the image format PIL finds in ``content`` (None: not an image it knows)."""
    try:
        with Image.open(io.BytesIO(content)) as img:
            found = img.format
    except Exception:  # noqa: BLE001 - not an image
        return None
    return next(
        (ext for ext, fmt in Image.registered_extensions().items() if fmt == found and ext in IMG_EXTENSIONS), None
    )


def extension(value: str, content_type: str = "", content: bytes = b"") -> str:
    """The image's file extension: from its name in the URL, else from the content type, else
    from the bytes; ``.img`` when none tells."""
    for name in _names(value):
        suffix = Path(name).suffix.lower()
        if suffix in IMG_EXTENSIONS:
            return suffix
    guessed = mimetypes.guess_extension(content_type.split(";")[0].strip()) if content_type else None
    if guessed in IMG_EXTENSIONS:
        return guessed
    return (_sniffed(content) if content else None) or ".img"


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
        self._listed: dict[str, str] | None = None  # stem -> file name, listed once when needed

    def _listing(self) -> dict[str, str]:
        if self._listed is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._listed = {p.stem: p.name for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")}
        return self._listed

    def cached(self, task: int, value) -> str | None:
        """The file name of the task's image when it is in the cache. A URL that names an image
        extension is looked up by that name alone, so that ``/predict`` does not list a folder
        of ten thousand images; others through one listing of the folder."""
        if not isinstance(value, str) or not value:
            return None
        stem = cache_name(task, value)
        suffix = extension(value)
        if suffix != ".img" and self._listed is None:
            return stem + suffix if (self.folder / (stem + suffix)).is_file() else None
        return self._listing().get(stem)

    def fetch_all(self, images: dict[int, str]) -> tuple[dict[int, str], list[str]]:
        """Every task's image (task id -> its URL in the task data) on disk: -> (task id -> file
        name in the folder, lines about tasks skipped)."""
        have = self._listing()
        files, skipped = self.fetch(images)
        for stale in set(have.values()) - set(files.values()):
            (self.folder / stale).unlink(missing_ok=True)
        return files, skipped

    def fetch(self, images: dict[int, str]) -> tuple[dict[int, str], list[str]]:
        """As :meth:`fetch_all`, without removing the files of other tasks."""
        self.folder.mkdir(parents=True, exist_ok=True)
        files, skipped = {}, []
        for task, value in images.items():
            name = self.cached(task, value)
            why = ""
            if name is None:
                stem = cache_name(task, value) if isinstance(value, str) else ""
                name, why = self._download(task, value, stem)
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
        kind = got.headers.get("content-type", "")
        suffix = extension(value, kind, got.content)
        if suffix == ".img":
            return None, f"not an image ({kind or 'no content type'}, {len(got.content)} bytes)"
        name = stem + suffix
        tmp = self.folder / f".{name}.tmp{threading.get_ident()}"  # the worker and a request may both fetch
        tmp.write_bytes(got.content)
        tmp.replace(self.folder / name)
        if self._listed is not None:
            self._listed[stem] = name
        return name, ""
