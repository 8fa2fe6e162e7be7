"""This backend's older predictions, deleted when a training re-scores the open tasks
(``--old_predictions delete``, the default; ``keep`` leaves them all).

Label Studio keeps every prediction it is given, so without this each training would add one
more prediction to every open task. Deleted are the predictions that

- are this backend's: their model version is ``lplgrad-<n>``;
- were in the task listing this training read, so were made before its predictions were posted
  (an earlier version's, or a failed attempt's at the same version);
- sit on a task this training re-scores, or on an open audit task (which must show no
  prediction at all).

Labelled tasks keep theirs (the network's guess when they were labelled), and predictions of
other models, of ``python -m lplgrad.label`` (``labeling/round_NNN``) or imported by hand are
never touched.

Label Studio 1.23 deletes predictions in two ways: the Data Manager action
``delete_tasks_predictions`` (every prediction of the selected tasks, one request for many
tasks) and ``DELETE /api/predictions/<id>`` (one prediction a request). A task whose every
prediction is one of this backend's older ones, the usual case, is cleared by the action, in
requests of :data:`CHUNK` tasks, just before the new predictions are posted; on a task that
also holds other predictions, this backend's older ones are deleted one by one after the
posting.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from lplgrad.errors import LabelStudioError
from lplgrad.labeling.live import LiveProject

log = logging.getLogger("lplgrad.serve")

VERSION = re.compile(r"lplgrad-\d+")
CHUNK = 500  # tasks per Data Manager action (well under SQLite's limit on query parameters)
MODES = ("delete", "keep")


def prediction_pairs(predictions: list[Any] | None) -> list[tuple[int | None, str]]:
    """(id, model version) of each prediction of a task listing (SDK objects or dicts)."""
    out = []
    for p in predictions or []:
        get = p.get if isinstance(p, dict) else lambda key, p=p: getattr(p, key, None)
        out.append((get("id"), get("model_version") or ""))
    return out


@dataclass
class Older:
    """What to delete: ``whole``, tasks whose every prediction is an older one of this backend
    (cleared by the Data Manager action), and ``single``, the ids of this backend's older
    predictions on tasks that also hold others; ``count``, how many predictions in all."""

    whole: list[int] = field(default_factory=list)
    single: list[int] = field(default_factory=list)
    count: int = 0


def older_predictions(tasks: list[dict[str, Any]], rescored: set[int]) -> Older:
    """This backend's predictions read in ``tasks`` (each with ``predictions``: (id, model
    version) pairs) on the tasks in ``rescored``."""
    out = Older()
    for task in tasks:
        if task["id"] not in rescored:
            continue
        pairs = task.get("predictions") or []
        mine = [pid for pid, version in pairs if VERSION.fullmatch(version)]
        if not mine:
            continue
        if len(mine) == len(pairs):
            out.whole.append(task["id"])
            out.count += len(mine)
        else:
            ids = [pid for pid in mine if pid is not None]
            out.single.extend(ids)
            out.count += len(ids)
    return out


def delete_whole(live: LiveProject, older: Older) -> None:
    """Clear the tasks of ``older.whole`` (before the new predictions are posted). A failure is
    Label Studio's (:class:`LabelStudioError`): the training is tried again."""
    for start in range(0, len(older.whole), CHUNK):
        live.call(
            "deleting the older predictions",
            live.client.actions.create,
            id="delete_tasks_predictions",
            project=live.id,
            selected_items={"all": False, "included": older.whole[start : start + CHUNK]},
        )


def delete_single(live: LiveProject, older: Older) -> int:
    """Delete the predictions of ``older.single`` (after the posting); a failure is one logged
    line, not a failed training: the next training deletes what is left. -> how many are left"""
    for n, pid in enumerate(older.single):
        try:
            live.call(f"deleting the older prediction {pid}", live.client.predictions.delete, id=pid)
        except LabelStudioError as e:
            log.warning("%s; %d older predictions left for the next training", e, len(older.single) - n)
            return len(older.single) - n
    return 0
