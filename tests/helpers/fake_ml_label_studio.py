"""A fake Label Studio for the ML backend's unit tests: the part of label-studio-sdk's client
that ``python -m lplgrad.serve`` calls (a project with its labeling config, its tasks with
annotations and predictions, bulk prediction import, the project's model version, the Data
Manager action that deletes the predictions of tasks and the deletion of one prediction) and a
GET of image URLs, kept in memory. ``down = True`` makes every call fail as an unreachable
server does; ``refuse_deletes = True`` only the deletion of one prediction."""

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
        self.next_id = 1
        self.project = SimpleNamespace(id=project_id, label_config=labeling_config(classes), model_version="")
        self.tasks_: list[SimpleNamespace] = []
        self.files: dict[str, Path] = {}
        self.posted: list[dict] = []  # the predictions there now, each with its "id"
        self.gets: list[str] = []
        self.actions_: list[dict] = []  # the Data Manager actions run
        self.refuse_deletes = False
        self.projects = SimpleNamespace(
            get=self._guard(lambda id: self.project),
            import_predictions=self._guard(self._import),
            update=self._guard(self._update),
        )
        self.tasks = SimpleNamespace(list=self._guard(self._list))
        self.actions = SimpleNamespace(create=self._guard(self._action))
        self.predictions = SimpleNamespace(delete=self._guard(self._delete))

    def __call__(self, base_url: str, api_key: str) -> FakeMLLabelStudio:  # stands in for LabelStudio(...)
        return self

    def _guard(self, fn):
        def call(*args, **kwargs):
            if self.down:
                raise httpx.ConnectError("[Errno 111] Connection refused")
            return fn(*args, **kwargs)

        return call

    def _list(self, project: int, fields=None, resolve_uri=True) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(**vars(t), predictions=[dict(p) for p in self.posted if p["task"] == t.id])
            for t in self.tasks_
        ]

    def _import(self, id: int, request: list[dict]) -> None:
        for row in request:
            self.posted.append({**row, "id": self.next_id})
            self.next_id += 1

    def _action(self, id: str, project: int, selected_items: dict) -> None:
        assert id == "delete_tasks_predictions" and not selected_items["all"], (id, selected_items)
        self.actions_.append({"id": id, "project": project, "tasks": list(selected_items["included"])})
        chosen = set(selected_items["included"])
        self.posted = [p for p in self.posted if p["task"] not in chosen]

    def _delete(self, id: int) -> None:
        if self.refuse_deletes:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        self.posted = [p for p in self.posted if p["id"] != id]

    def add_prediction(self, task_id: int, model_version: str) -> int:
        """A prediction made elsewhere (another model, an import) on a task."""
        self._import(self.project_id, [{"task": task_id, "result": [], "score": 0.5, "model_version": model_version}])
        return self.next_id - 1

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
        return {p["task"]: p for p in self.posted if p["model_version"] == version}

    def versions_of(self, task_id: int) -> list[str]:
        """The model versions of the predictions a task holds, in the order they were posted."""
        return [p["model_version"] for p in self.posted if p["task"] == task_id]
