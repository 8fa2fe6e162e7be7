"""A fake Label Studio for the ML backend's unit tests: the part of label-studio-sdk's client
that ``python -m lplgrad.serve`` calls (a project with its labeling config, its tasks with
annotations, bulk prediction import, the project's model version) and a GET of image URLs,
kept in memory. ``down = True`` makes every call fail as an unreachable server does."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx

from lplgrad.labeling.label_studio import labeling_config


class FakeResponse:
    def __init__(self, status: int, content: bytes = b"", content_type: str = "image/png"):
        self.status_code, self.content, self.headers = status, content, {"content-type": content_type}


class FakeMLLabelStudio:
    """One project (id ``project_id``) whose tasks show the images of ``files`` (URL -> path)."""

    def __init__(self, classes: list[str], project_id: int = 7):
        self.project_id, self.down = project_id, False
        self.project = SimpleNamespace(id=project_id, label_config=labeling_config(classes), model_version="")
        self.tasks_: list[SimpleNamespace] = []
        self.files: dict[str, Path] = {}
        self.predictions: list[dict] = []
        self.gets: list[str] = []
        self.projects = SimpleNamespace(
            get=self._guard(lambda id: self.project),
            import_predictions=self._guard(self._import),
            update=self._guard(self._update),
        )
        self.tasks = SimpleNamespace(list=self._guard(lambda project, fields=None: list(self.tasks_)))

    def __call__(self, base_url: str, api_key: str) -> FakeMLLabelStudio:  # stands in for LabelStudio(...)
        return self

    def _guard(self, fn):
        def call(*args, **kwargs):
            if self.down:
                raise httpx.ConnectError("[Errno 111] Connection refused")
            return fn(*args, **kwargs)

        return call

    def _import(self, id: int, request: list[dict]) -> None:
        self.predictions.extend(dict(r) for r in request)

    def _update(self, id: int, model_version: str) -> None:
        self.project.model_version = model_version

    def add_task(self, url: str, path: Path | None) -> int:
        """A task showing ``url``, served from ``path`` (None: a URL that answers 404)."""
        task = SimpleNamespace(id=100 + len(self.tasks_), data={"image": url}, annotations=[])
        self.tasks_.append(task)
        if path is not None:
            self.files[url] = path
        return task.id

    def annotate(self, task_id: int, label: str, *, id: int, at: str, cancelled: bool = False) -> None:
        result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        (task,) = [t for t in self.tasks_ if t.id == task_id]
        task.annotations.append({"id": id, "updated_at": at, "was_cancelled": cancelled, "result": result})

    def get(self, url: str, headers=None, **_) -> FakeResponse:
        """Stands in for ``httpx.get`` of an image URL."""
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        self.gets.append(url)
        path = next((p for u, p in self.files.items() if url.endswith(u)), None)
        return FakeResponse(200, path.read_bytes()) if path is not None else FakeResponse(404, b"", "text/html")

    def latest(self, version: str) -> dict[int, dict]:
        """Task id -> its prediction of ``version``."""
        return {p["task"]: p for p in self.predictions if p["model_version"] == version}
