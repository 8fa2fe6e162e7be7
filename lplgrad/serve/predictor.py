"""``/predict`` for tasks the last scoring did not cover (added since the last training): the
last trained network (``state_dir/model.ckpt`` rebuilt from ``config.yaml`` beside it, as
``python -m lplgrad.predict`` does it, :func:`lplgrad.labeling.trained.load_trained`) classifies
their images, read from the image cache (fetched into it first when missing, the only time Label
Studio is asked). Such a task gets the class but no score (it was not ranked with the others), so
it comes after the ranked ones in the Data Manager; the next training ranks it. Before any trained
network, or when an image cannot be had, the task's prediction is empty."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lplgrad.errors import LPLgradError
from lplgrad.labeling.checkpoint import CHECKPOINT
from lplgrad.labeling.trained import TrainedModel, load_trained, probabilities
from lplgrad.serve.config import LabelConfig
from lplgrad.serve.images import ImageCache

log = logging.getLogger("lplgrad.serve")


class Predictor:
    """The last trained network, reloaded when the model version changes."""

    def __init__(self, state_dir: Path, open_live: Callable[[], Any]) -> None:
        self.state_dir, self.open_live = Path(state_dir), open_live
        self.lock = threading.Lock()
        self.version: int | None = None
        self.model: TrainedModel | None = None

    def _model(self, version: int) -> TrainedModel | None:
        if self.version != version:
            self.version, self.model = version, None
            if (self.state_dir / CHECKPOINT).is_file():
                try:
                    self.model = load_trained(self.state_dir)
                except LPLgradError as e:  # an untrained (cold-start) network, or none yet
                    log.info("predict: no trained network to classify new tasks (%s)", e)
        return self.model

    def classify(self, tasks: list[dict[str, Any]], config: LabelConfig, version: int) -> dict[int, str]:
        """Task id -> the network's class for each task whose image can be had. Label Studio is
        asked only for images not in the cache yet."""
        with self.lock:
            model = self._model(version)
            if model is None or not tasks:
                return {}
            images = {t["id"]: (t.get("data") or {}).get(config.value_key) for t in tasks}
            cache = ImageCache(self.state_dir / "images", "", {})
            files = {task: name for task, value in images.items() if (name := cache.cached(task, value))}
            skipped = []
            if len(files) < len(images):
                try:
                    live = self.open_live()
                    cache = ImageCache(self.state_dir / "images", live.url, live.authorization())
                    got, skipped = cache.fetch({t: v for t, v in images.items() if t not in files})
                    files.update(got)
                except LPLgradError as e:
                    log.warning("predict: %s", e)
            out = {}
            for task, name in files.items():
                try:
                    x = model.spec.load(cache.folder / name)[None]
                except Exception as e:  # noqa: BLE001 - an image that does not decode: no class, said once
                    skipped.append(f"task {task}: {e}")
                    continue
                with torch.no_grad():
                    out[task] = model.classes[int(probabilities(model.net, x, len(model.classes)).argmax(1))]
            for line in skipped:
                log.info("predict: skipped %s", line)
            return out
