"""The routes Label Studio 1.23 calls (Flask; served by waitress, :mod:`~lplgrad.serve.cli`).

- ``GET /health``: ``{"status": "UP", "model_version", ...}`` and the backend's state;
- ``POST /setup``: ``{"model_version"}`` (the project is adopted when none is served yet);
- ``POST /predict``: for each task, the last scoring's class as a ``choices`` result (names from
  the request's labeling config), its score (ascending = most informative first) and the model
  version, as ``{"results": [...]}`` in task order; a task not scored yet gets the last trained
  network's class without a score (:mod:`~lplgrad.serve.predictor`), or an empty result; an
  audit task (``--audit.size``) always gets an empty result, so the network never sways its label;
- ``POST /webhook``: annotation events (counted; every ``--train_every`` starts a training)
  and ``START_TRAINING``; nothing is trained in the request (:mod:`~lplgrad.serve.worker`);
- ``GET /versions``: the model version.

Requests only read the state and ask the worker: each answers in milliseconds.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Flask, jsonify, request

from lplgrad.errors import LPLgradError
from lplgrad.serve.backend import Backend
from lplgrad.serve.config import choice_result, parse_label_config


def _authorised(backend: Backend) -> bool:
    user = backend.auth.user
    if user is None:
        return True
    got = request.authorization
    return (
        got is not None
        and hmac.compare_digest(got.username or "", user)
        and hmac.compare_digest(got.password or "", backend.auth.password or "")
    )


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def predictions(backend: Backend, tasks: list[Any], label_config: str) -> list[dict[str, Any]]:
    """One prediction per task, in order (see the module docstring)."""
    state = backend.state.read()
    config = parse_label_config(label_config)
    audit = set(state.audit)
    unknown = [
        t for t in tasks if isinstance(t, dict) and str(t.get("id")) not in state.scores and t.get("id") not in audit
    ]
    guessed = backend.predictor.classify(unknown, config, state.version) if backend.predictor else {}
    out = []
    for task in tasks:
        task_id = task.get("id") if isinstance(task, dict) else None
        label, score = state.scores.get(str(task_id), (guessed.get(task_id), None))
        if task_id in audit:  # no prediction: the annotator labels it unswayed
            label, score = None, None
        out.append(
            {
                "result": choice_result(config, label) if label else [],
                "score": score,
                "model_version": state.model_version,
            }
        )
    return out


def create_app(backend: Backend) -> Flask:
    """The Flask application of ``backend``."""
    app = Flask("lplgrad.serve")

    @app.before_request
    def check_auth():
        if not _authorised(backend):
            return jsonify({"error": "basic auth required"}), 401, {"WWW-Authenticate": 'Basic realm="lplgrad"'}
        return None

    @app.get("/health")
    @app.get("/")
    def health():
        state = backend.state.read()
        return jsonify({"status": "UP", "model_class": "lplgrad", "training": backend.worker.busy, **state.summary()})

    @app.post("/setup")
    def setup():
        backend.adopt(_body().get("project"))
        return jsonify({"model_version": backend.state.read().model_version})

    @app.post("/predict")
    def predict():
        data = _body()
        tasks = data.get("tasks")
        if not isinstance(tasks, list):
            return jsonify({"error": "the body has no list of tasks"}), 400
        backend.adopt(data.get("project"))
        try:
            results = predictions(backend, tasks, data.get("label_config") or "")
        except LPLgradError as e:
            return jsonify({"error": str(e)}), 400
        return jsonify({"results": results, "model_version": backend.state.read().model_version})

    @app.post("/webhook")
    def webhook():
        data = _body()
        action = data.get("action")
        if not isinstance(action, str):
            return jsonify({"error": "the body has no action"}), 400
        status = backend.event(action, data)
        return jsonify({"status": status, "model_version": backend.state.read().model_version}), (
            201 if not status.startswith("ignored") else 200
        )

    @app.get("/versions")
    def versions():
        return jsonify({"versions": [backend.state.read().model_version]})

    return app
