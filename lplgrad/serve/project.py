"""The Label Studio project the backend serves, through label-studio-sdk's public API: its
labeling config, its tasks with their annotations and predictions, and the predictions of a
model version.

Every failure (network, key, refused request) is one :class:`~lplgrad.errors.LabelStudioError`
line; the worker logs it and retries later."""

from __future__ import annotations

import os
from typing import Any

from lplgrad.errors import LabelStudioError
from lplgrad.labeling.label_studio import latest_choice
from lplgrad.labeling.live import LiveProject
from lplgrad.serve.cleanup import prediction_pairs
from lplgrad.serve.config import LabelConfig, choice_result, parse_label_config


def open_project(url: str, key_env: str, project: int, client_factory=None) -> LiveProject:
    """A :class:`LiveProject` for project ``project`` (the API key from ``key_env``)."""
    key = os.environ.get(key_env)
    if not key:
        raise LabelStudioError(f"no Label Studio API key: set the environment variable {key_env}")
    if client_factory is None:
        from label_studio_sdk import LabelStudio as client_factory
    return LiveProject(client_factory(base_url=url, api_key=key), url, project, str(project), False, key)


def label_config(live: LiveProject) -> LabelConfig:
    """The project's question (:func:`~lplgrad.serve.config.parse_label_config`)."""
    found = live.call(f"opening project {live.id}", live.client.projects.get, id=live.id)
    return parse_label_config(found.label_config)


def project_tasks(live: LiveProject) -> list[dict[str, Any]]:
    """Every task of the project as a dict: ``id``, ``data``, ``annotations``, and its
    ``predictions`` as (id, model version) pairs. The data is as stored (``s3://...``, not
    Label Studio's resolving URL): what Label Studio sends to ``/predict`` too, so both find the
    same cached image."""
    items = live.call(
        "listing the tasks",
        lambda: list(live.client.tasks.list(project=live.id, fields="all", resolve_uri=False)),
    )
    return [
        {
            "id": t.id,
            "data": dict(t.data or {}),
            "annotations": list(t.annotations or []),
            "predictions": prediction_pairs(getattr(t, "predictions", None)),
        }
        for t in items
    ]


def task_labels(tasks: list[dict[str, Any]], config: LabelConfig) -> dict[int, str | None]:
    """Every task -> its class now, or None: the latest annotation (by ``updated_at``, then id)
    that was not cancelled and holds a choice of ``config``'s question, over every annotator
    (:func:`lplgrad.labeling.label_studio.latest_choice`, the labeling app's rule); a deleted
    annotation is simply gone. A class that is not in the config is no label."""
    out = {}
    for task in tasks:
        label, _ = latest_choice(task["annotations"], config.from_name, f"task {task['id']}")
        out[task["id"]] = label if label in config.classes else None
    return out


def post_predictions(
    live: LiveProject, config: LabelConfig, scored: dict[int, tuple[str | None, float]], version: str
) -> int:
    """One prediction of ``version`` per scored task (one bulk import), then the project's
    ``model_version`` set to it so that the Data Manager's "Prediction score" shows these."""
    rows = [
        {
            "task": task,
            "result": choice_result(config, label) if label else [],
            "score": score,
            "model_version": version,
        }
        for task, (label, score) in scored.items()
    ]
    if rows:
        live.call("posting the predictions", live.client.projects.import_predictions, id=live.id, request=rows)
        live.call("setting the project's model version", live.client.projects.update, id=live.id, model_version=version)
    return len(rows)
