"""Live sync with a running Label Studio, through its SDK (``label-studio-sdk``).

Each labeling run, with ``--label_studio.url`` and ``--label_studio.project``:

1. before anything is read or written locally: connect (the API key is read from the
   environment variable ``--label_studio.key_env``), find the project (by id or title; a missing title is
   created with the labeling config of the classes), and read every task with its annotations;
2. the labels CSV is rewritten as a snapshot of the project (:mod:`lplgrad.labeling.snapshot`):
   Label Studio is the source of truth for the images it has a task for, so a label changed,
   deleted or cancelled there is changed or removed here; rows for other images are kept;
3. the first time (and whenever the URL prefix changes), that Label Studio really serves the
   images the tasks point at (:mod:`lplgrad.labeling.served`), before anything is imported;
4. after the network has proposed the next batch: the batch is imported as tasks with their
   predictions, leaving out images the project already has a task for; only then is the round's
   folder written.

A network error, a rejected key or a refused request stops the run with one line
(:class:`LabelStudioError`, exit code 4). At step 1 nothing local has changed yet; at step 4 the
labels CSV holds what step 2 read (the project's labels) and the round's folder is not
written, so the next run makes the round again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lplgrad.errors import LabelStudioError
from lplgrad.labeling.label_studio import labeling_config, project_labels


@dataclass
class LiveSyncOptions:
    """Live sync with a running Label Studio (off without ``url``).

    Args:
        url: Label Studio's address, e.g. http://localhost:8080.
        project: the project's id, or its title (created, with the classes, when missing).
        key_env: the environment variable holding the API key (access token).
    """

    url: str | None = None
    project: str | None = None
    key_env: str = "LABEL_STUDIO_API_KEY"


def _why(e: BaseException) -> str:
    status = getattr(e, "status_code", None)
    if status in (401, 403):
        return f"the API key was rejected (HTTP {status})"
    text = (str(getattr(e, "body", "") or e) or type(e).__name__).replace("\n", " ")
    return (f"HTTP {status}: " if status else f"{type(e).__name__}: ") + text[:200]


@dataclass
class Pulled:
    """A project's tasks read back: every image with a task -> its class (None: no annotation
    that counts), notes on tasks left out, and how many tasks there are."""

    truth: dict[str, str | None]
    notes: list[str]
    tasks: int

    @property
    def annotated(self) -> int:
        """How many images have a class."""
        return sum(label is not None for label in self.truth.values())


@dataclass
class Fetched:
    """What a GET of an image URL returned: the status, the content type (lower case, without
    parameters) and the body's first bytes."""

    status: int
    content_type: str
    head: bytes


@dataclass
class LiveProject:
    """A connected Label Studio project."""

    client: Any
    url: str
    id: int
    title: str
    created: bool
    key: str = ""  # the API key: a legacy token, or a personal access token (a JWT refresh token)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - network, authentication, HTTP errors: one line
            raise LabelStudioError(f"Label Studio at {self.url}: {what} failed: {_why(e)}") from None

    def tasks(self) -> list[dict[str, Any]]:
        """Every task of the project, as dicts with ``id``, ``data`` and ``annotations``."""
        items = self._call("listing the tasks", lambda: list(self.client.tasks.list(project=self.id, fields="all")))
        return [{"id": t.id, "data": dict(t.data or {}), "annotations": list(t.annotations or [])} for t in items]

    def pull(self, prefix: str | None, choices_name: str = "label") -> Pulled:
        """Every task's image and its class now (:func:`~lplgrad.labeling.label_studio.project_labels`)."""
        items = self.tasks()
        truth, notes = project_labels(items, prefix, choices_name)
        return Pulled(truth, notes, len(items))

    def fetch(self, url: str) -> Fetched:
        """GET an image URL as the labeling page would: a path (``/data/local-files/?d=...``)
        through Label Studio's address with the API key, a full http(s) URL as it is, without
        the key (it is not Label Studio's to see)."""
        import httpx

        if url.startswith("/"):  # the SDK has no public call for a plain GET of a served file
            headers = self._call("authenticating", self._authorization)
            response = self._call(f"fetching {url}", httpx.get, self.url.rstrip("/") + url, headers=headers, timeout=60)
        else:
            response = self._call(f"fetching {url}", httpx.get, url, follow_redirects=True, timeout=60)
        kind = response.headers.get("content-type", "")
        return Fetched(response.status_code, kind.split(";")[0].strip().lower(), response.content[:64])

    def call(self, what: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``; any failure becomes one :class:`LabelStudioError` line naming ``what``."""
        return self._call(what, fn, *args, **kwargs)

    def authorization(self) -> dict[str, str]:
        """The Authorization header for a plain GET of a file Label Studio serves (one line on failure)."""
        return self._call("authenticating", self._authorization)

    def _authorization(self) -> dict[str, str]:
        """Label Studio's Authorization header for the key: a legacy token is sent as
        ``Token <key>``; a personal access token (a JWT, three dot-separated parts) is a refresh
        token, exchanged at ``/api/token/refresh`` for an access token sent as ``Bearer``."""
        import httpx

        if self.key.count(".") != 2:
            return {"Authorization": f"Token {self.key}"}
        got = httpx.post(f"{self.url.rstrip('/')}/api/token/refresh", json={"refresh": self.key}, timeout=60)
        got.raise_for_status()
        return {"Authorization": f"Bearer {got.json()['access']}"}

    def serve_folder(self, images: Path) -> bool:
        """Make Label Studio serve the image folder to this project (a Local Files storage, not
        synced: lplgrad imports the tasks itself). Returns True when the storage was added now."""
        folder = str(Path(images).resolve())
        storages = self._call(
            "listing the project's local storages", lambda: list(self.client.import_storage.local.list(project=self.id))
        )
        if any(getattr(st, "path", None) == folder for st in storages):
            return False
        try:
            self.client.import_storage.local.create(
                project=self.id, path=folder, title="lplgrad image folder", use_blob_urls=False, recursive_scan=True
            )
        except Exception as e:  # noqa: BLE001
            raise LabelStudioError(
                f"Label Studio at {self.url} will not serve {folder} ({_why(e)}): start it with "
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to the "
                "folder that holds the image folder, or give --url_prefix for images served another way"
            ) from None
        return True

    def push(self, tasks: list[dict[str, Any]], existing: set[str]) -> int:
        """Import the tasks whose image has no task in the project yet; returns how many."""
        new = [t for t in tasks if t["data"]["path"] not in existing]
        if new:
            self._call("importing the tasks", self.client.projects.import_tasks, id=self.id, request=new)
        return len(new)


def connect(url: str, project: str, key_env: str, classes: list[str]) -> LiveProject:
    """Connect, find the project by id or title, create it (with the classes' labeling config)
    when a title is not found."""
    key = os.environ.get(key_env)
    if not key:
        raise LabelStudioError(
            f"no Label Studio API key: set the environment variable {key_env} (your access token "
            "from Label Studio's Account & Settings page)"
        )
    try:
        from label_studio_sdk import LabelStudio
    except ImportError:
        raise LabelStudioError("live sync needs label-studio-sdk: pip install 'lplgrad[label-studio]'") from None
    client = LabelStudio(base_url=url, api_key=key)
    live = LiveProject(client, url, -1, project, False, key)
    if project.isdigit():
        found = live._call(f"opening project {project}", client.projects.get, id=int(project))
        live.id, live.title = found.id, found.title
        return live
    for p in live._call("listing the projects", lambda: list(client.projects.list())):
        if p.title == project:
            live.id = p.id
            return live
    if not classes:
        raise LabelStudioError(
            f"Label Studio at {url} has no project {project!r}, and the classes to create it with "
            "are not known yet: give --classes"
        )
    made = live._call(
        f"creating project {project!r}",
        client.projects.create,
        title=project,
        label_config=labeling_config(classes),
        description="Images proposed by python -m lplgrad.label, most informative first",
    )
    live.id, live.created = made.id, True
    return live
