"""Label Studio round trip: the proposed batch as tasks, and labels back from tasks.

A task is ``{"data": {"image": <url_prefix + path>, "path": <path>, "rank", "score", ...},
"predictions": [...], "meta": {...}}``; ``data.image`` is what the labeling config's
``<Image value="$image"/>`` shows, ``data.path`` brings the image's path back unchanged in every
export format. Each task carries one prediction: the network's class as a ``choices`` result
(none before the network is trained), ``model_version`` naming the run and round, and ``score`` =
rank / batch size, so that Label Studio's Data Manager sorted by "Prediction score" ascending
shows the most informative image first. Labels come back from Label Studio's JSON export (tasks
with ``annotations``), its JSON-MIN (one flat object per task), a CSV with ``path`` and ``label``
columns, or, with live sync (:mod:`lplgrad.labeling.live`), from the server's tasks directly.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import quoteattr

from lplgrad.errors import ExportShapeError
from lplgrad.labeling.labels import LabelingError, append_labels, normalise_path, read_rows, text_of


def local_files_prefix(images: Path) -> str:
    """The URL prefix of Label Studio's local-files serving when its document root is the image
    folder's parent: ``/data/local-files/?d=<folder name>/``."""
    return f"/data/local-files/?d={quote(Path(images).resolve().name)}/"


def image_url(prefix: str, path: str) -> str:
    return prefix + quote(path, safe="/") if prefix else path


def prediction(row: dict[str, Any], n_rows: int, model_version: str, choices_name: str = "label") -> dict[str, Any]:
    """The task's prediction: the network's class (if it was trained), and rank / batch size as the
    score, so that an ascending sort on it puts the most informative image first."""
    result = []
    if row.get("predicted"):
        result = [
            {"from_name": choices_name, "to_name": "image", "type": "choices", "value": {"choices": [row["predicted"]]}}
        ]
    return {"model_version": model_version, "score": row["rank"] / max(1, n_rows), "result": result}


def tasks(
    rows: list[dict[str, Any]], prefix: str, round_: int, strategy: str, model_version: str
) -> list[dict[str, Any]]:
    """One task per proposed image. rows: dicts with rank, path, score and optionally predicted, confidence."""
    out = []
    for r in rows:
        data = {
            "image": image_url(prefix, r["path"]),
            "path": r["path"],
            "rank": r["rank"],
            "score": r["score"],
            "round": round_,
        }
        if r.get("predicted"):
            data["predicted"] = r["predicted"]
            data["confidence"] = r["confidence"]
        out.append(
            {
                "data": data,
                "predictions": [prediction(r, len(rows), model_version)],
                "meta": {"rank": r["rank"], "score": r["score"], "round": round_, "strategy": strategy},
            }
        )
    return out


def labeling_config(classes: list[str], choices_name: str = "label") -> str:
    """A Label Studio labeling config: the image and one single-choice question with the classes."""
    lines = [
        "<View>",
        '  <Image name="image" value="$image"/>',
        f'  <Choices name={quoteattr(choices_name)} toName="image" choice="single" showInline="true">',
    ]
    lines += [f"    <Choice value={quoteattr(c)}/>" for c in classes]
    lines += ["  </Choices>", "</View>", ""]
    return "\n".join(lines)


def _path_of(data: dict[str, Any], prefix: str | None) -> str | None:
    if isinstance(data.get("path"), str) and data["path"]:
        return data["path"]
    image = data.get("image")
    if isinstance(image, str) and prefix and image.startswith(prefix):
        return unquote(image[len(prefix) :])
    return None


def _expect(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind):
        name = {dict: "an object", list: "a list", str: "a string"}[kind]
        raise ExportShapeError(
            f"{where}: {what} is {type(value).__name__} {value!r:.40}, not {name}: "
            "not a Label Studio export (JSON, JSON-MIN or CSV)?"
        )
    return value


def _first_choice(values: Any, where: str) -> str | None:
    """A ``choices`` value: a list of class names (the first is used), or a single name."""
    if isinstance(values, str):
        return values or None
    values = _expect(values or [], list, where, "'choices'")
    return str(values[0]) if values else None


def _choice(result: Any, choices_name: str | None, where: str) -> str | None:
    for item in _expect(result, list, where, "an annotation's 'result'"):
        item = _expect(item, dict, where, "a result")
        if item.get("type") != "choices" or (choices_name and item.get("from_name") not in (choices_name, None)):
            continue
        label = _first_choice(_expect(item.get("value", {}), dict, where, "a result's 'value'").get("choices"), where)
        if label:
            return label
    return None


def _when(ann: dict[str, Any]) -> float:
    """An annotation's ``updated_at`` (else ``created_at``) as a POSIX time; -inf when it has none."""
    value = ann.get("updated_at") or ann.get("created_at")
    try:
        t = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        t = None
    if t is None:
        return float("-inf")
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def latest_choice(annotations: Any, choices_name: str | None, where: str) -> tuple[str | None, tuple]:
    """The class of a task's annotations, and the order key of the annotation it came from: the
    latest annotation (by ``updated_at``, then ``id``; list order last) that was not cancelled
    (``was_cancelled``: skipped) and holds a choice. (None, ()) when there is none."""
    items = [_expect(a, dict, where, "an annotation") for a in _expect(annotations or [], list, where, "'annotations'")]
    keys = [(_when(a), a["id"] if isinstance(a.get("id"), int) else -1, n) for n, a in enumerate(items)]
    for key, ann in sorted(zip(keys, items), key=lambda pair: pair[0], reverse=True):
        if not ann.get("was_cancelled"):
            label = _choice(ann.get("result") or [], choices_name, where)
            if label is not None:
                return label, key
    return None, ()


def task_label(task: Any, n: int, prefix: str | None, choices_name: str) -> tuple[str, str | None, str | None, tuple]:
    """One task (a full one, or a JSON-MIN row) -> (where, image path, class, order key of the
    annotation it came from); path or class None when it has none."""
    if not isinstance(task, dict):
        return f"item {n}", None, None, ()
    where = f"task {task.get('id', n)}"
    if "data" in task:  # a full task
        path = _path_of(_expect(task["data"], dict, where, "'data'"), prefix)
        return (where, path, *latest_choice(task.get("annotations"), choices_name, where))
    value = task.get(choices_name)  # JSON-MIN: data fields and the choice (by its name) side by side
    if isinstance(value, dict):  # several choices: {"choices": [...]}
        value = _first_choice(value.get("choices"), where)
    return where, _path_of(task, prefix), value if isinstance(value, str) and value else None, ()


def _no_path(where: str) -> str:
    return f"{where}: no 'path' in its data (not made by python -m lplgrad.label?)"


def labels_from_tasks(
    items: list[Any], prefix: str | None = None, choices_name: str = "label"
) -> tuple[list[tuple[str, str]], list[str]]:
    """Labels from Label Studio tasks (the JSON export's, the server's, or JSON-MIN rows) ->
    ([(image path, class)], notes on tasks left out); a task's class is :func:`latest_choice`'s."""
    pairs, notes = [], []
    for n, task in enumerate(items, 1):
        where, path, label, _ = task_label(task, n, prefix, choices_name)
        if not isinstance(task, dict):
            notes.append(f"{where}: not a task")
        elif path is None:
            notes.append(_no_path(where))
        elif label is None:
            notes.append(f"{where}: {path}: not labeled")
        else:
            pairs.append((path, str(label)))
    return pairs, notes


def project_labels(
    items: list[Any], prefix: str | None = None, choices_name: str = "label"
) -> tuple[dict[str, str | None], list[str]]:
    """Every image a project has a task for -> its class (None: no annotation left that counts),
    in task order, and notes on tasks left out. An image with several tasks takes the class of
    the latest annotation among them (:func:`latest_choice`)."""
    best: dict[str, tuple[tuple, str | None]] = {}
    notes = []
    for n, task in enumerate(items, 1):
        where, path, label, key = task_label(task, n, prefix, choices_name)
        if path is None:
            notes.append(_no_path(where) if isinstance(task, dict) else f"{where}: not a task")
        elif path not in best or (label is not None and (best[path][1] is None or key > best[path][0])):
            best[path] = (key, label)
    return {path: label for path, (_, label) in best.items()}, notes


def read_export(
    path: str | Path, prefix: str | None = None, choices_name: str = "label"
) -> tuple[list[tuple[str, str]], list[str]]:
    """Labels from a Label Studio export file (JSON, JSON-MIN or CSV) -> ([(image path, class)],
    notes on tasks left out)."""
    path = Path(path)
    if not path.is_file():
        raise LabelingError(f"Label Studio export {path} does not exist")
    text = text_of(path, "the Label Studio export")
    if path.suffix.lower() == ".csv":
        pairs, notes = [], []
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames or choices_name not in reader.fieldnames:
                raise LabelingError(f"{path}: a CSV export needs the columns 'path' and {choices_name!r}")
            for row in reader:
                p, label = (row.get("path") or "").strip(), (row.get(choices_name) or "").strip()
                if p and label:
                    pairs.append((p, label))
                elif p:
                    notes.append(f"{p}: no label (line {reader.line_num})")
        return pairs, notes
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelingError(f"{path} is not JSON: {e}") from None
    if not isinstance(items, list):
        raise LabelingError(f"{path}: a Label Studio export is a JSON list of tasks")
    return labels_from_tasks(items, prefix, choices_name)


@dataclass
class Imported:
    """What :func:`import_export` did: labeled tasks read, rows appended, tasks left out, labels changed."""

    pairs: int
    new: int
    notes: list[str]
    changed: list[str]


def import_export(export: str | Path, labels_csv: str | Path, root: str | Path, prefix: str) -> Imported:
    """Append the labels of a Label Studio export file to the labels CSV (:func:`merge_labels`)."""
    check_outside(labels_csv, root, "--import_from")
    pairs, notes = read_export(export, prefix)
    return merge_labels(pairs, notes, labels_csv, root)


def check_outside(labels_csv: str | Path, root: str | Path, option: str) -> None:
    if Path(root).resolve() in Path(labels_csv).resolve().parents:
        raise LabelingError(
            f"{option} would append to {labels_csv}, which is inside the image folder "
            f"{root} (never written to): keep the labels CSV outside it"
        )


def merge_labels(pairs: list[tuple[str, str]], notes: list[str], labels_csv: str | Path, root: str | Path) -> Imported:
    """Append ``pairs`` to the labels CSV: rows it already has (same path, same label) are not
    repeated, so merging the same labels again appends nothing; a changed label is appended (the
    later row wins); a path outside the image folder is left out with a note."""
    root, labels_csv = Path(root), Path(labels_csv)
    current: dict[str, str] = {}  # the label each path has now (the later row wins)
    if labels_csv.is_file():
        for _, raw, label in read_rows(labels_csv):
            p = normalise_path(raw, root)
            if p and label:
                current[p] = label
    new, changed, notes = [], [], list(notes)
    for p, label in pairs:
        key = normalise_path(p, root)
        if key is None:
            notes.append(f"{p}: not inside the image folder {root}: left out")
            continue
        if current.get(key) != label:
            new.append((key, label))
            if key in current:
                changed.append(
                    f"{key}: {current[key]!r} in {labels_csv}, {label!r} in the export: "
                    f"the export's row is appended and wins"
                )
            current[key] = label
    if new:
        append_labels(labels_csv, new)
    return Imported(len(pairs), len(new), notes, changed)
