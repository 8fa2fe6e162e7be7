"""A fake Label Studio for the labeling app's unit tests: the part of label-studio-sdk's client
that live sync calls (projects, Local Files storages, tasks with annotations, and the SDK's
authenticated HTTP client for served files), kept in memory.

Files are served the way Label Studio 1.23 does it: ``/data/local-files/?d=<path>`` is read below
``document_root``, and only below a Local Files storage of the project (no task needed)."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit


class FakeResponse:
    def __init__(self, status: int, content_type: str = "text/html", content: bytes = b"<html>not found</html>"):
        self.status_code, self.headers, self.content = status, {"content-type": content_type}, content


class FakeLabelStudio:
    """One fake server: ``document_root`` is its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (None:
    local-files serving off)."""

    def __init__(self, document_root: Path | None):
        self.document_root = document_root
        self.projects_ = {}  # id -> namespace(id, title)
        self.storages = []  # namespaces(project, path)
        self.tasks_ = []  # namespaces(id, project, data, annotations)
        self.fetched = []  # every URL fetched
        FakeLabelStudio.latest = self  # the server the tests' patched httpx.get reaches
        self.projects = SimpleNamespace(
            list=lambda: list(self.projects_.values()),
            get=lambda id: self.projects_[id],
            create=self._create_project,
            import_tasks=self._import_tasks,
        )
        local = SimpleNamespace(
            list=lambda project: [s for s in self.storages if s.project == project],
            create=lambda project, path, **_: self.storages.append(SimpleNamespace(project=project, path=path)),
        )
        self.import_storage = SimpleNamespace(local=local)
        self.tasks = SimpleNamespace(list=lambda project, fields=None: [t for t in self.tasks_ if t.project == project])

    def http_get(self, url: str, headers=None, **_) -> FakeResponse:
        """Stands in for ``httpx.get`` (tests patch it): a GET of ``url``, with the API key."""
        assert (headers or {}).get("Authorization", "").startswith("Token "), "a served file is fetched with the key"
        return self.respond(urlsplit(url)._replace(scheme="", netloc="").geturl())

    def __call__(self, base_url: str, api_key: str) -> FakeLabelStudio:  # stands in for LabelStudio(...)
        return self

    def _create_project(self, title: str, **_) -> SimpleNamespace:
        project = SimpleNamespace(id=len(self.projects_) + 1, title=title)
        self.projects_[project.id] = project
        return project

    def _import_tasks(self, id: int, request: list[dict]) -> None:
        for task in request:
            self.tasks_.append(SimpleNamespace(id=len(self.tasks_) + 1, project=id, data=task["data"], annotations=[]))

    def respond(self, path: str) -> FakeResponse:
        """What Label Studio answers to a GET of ``path`` (the local-files view)."""
        self.fetched.append(path)
        if self.document_root is None:
            return FakeResponse(403, "text/plain", b"Serving local files can be dangerous")
        query = parse_qs(urlsplit(path).query).get("d")
        if not path.startswith("/data/local-files/") or not query:
            return FakeResponse(404)
        file = self.document_root / query[-1].lstrip("/")
        if file.is_file() and any(Path(s.path) in file.parents for s in self.storages):
            return FakeResponse(
                200, mimetypes.guess_type(file.name)[0] or "application/octet-stream", file.read_bytes()
            )
        return FakeResponse(404)

    def task(self, path: str) -> SimpleNamespace:
        """The task of an image (its ``annotations`` can be changed in place)."""
        (task,) = [t for t in self.tasks_ if t.data["path"] == path]
        return task

    def annotate(self, path: str, label: str, *, at: str, id: int, cancelled: bool = False) -> None:
        """Add an annotation to the image's task, as an annotator would."""
        result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        self.task(path).annotations.append({"id": id, "updated_at": at, "was_cancelled": cancelled, "result": result})
