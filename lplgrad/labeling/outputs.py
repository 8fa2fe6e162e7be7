"""The write step of a labeling run, and every file it writes: ``<out>/round_NNN/`` with the
proposal (``to_label.csv``, the Label Studio tasks and labeling config), the network that scored
it, the stop signal's files and ``proposal.json``. Each file is written atomically, into the
round's staging folder (:func:`~lplgrad.labeling.checkpoint.staged_round`)."""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lplgrad.labeling.audit import AuditRound, audit_tasks, write_drawn
from lplgrad.labeling.checkpoint import CHECKPOINT, save_checkpoint
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.label_studio import labeling_config, tasks
from lplgrad.labeling.propose import Proposal
from lplgrad.labeling.report import say
from lplgrad.labeling.stop import STOP_SET, StopResult
from lplgrad.labeling.train import Training, TrainingMode
from lplgrad.module import ActiveLearner
from lplgrad.records import atomic_write


@dataclass
class LabelRound:
    """One labeling round as its steps fill it in: where it goes, how the network was trained,
    what it proposes, and the Label Studio tasks of the proposal."""

    round: int
    rdir: Path  # <out>/round_NNN
    prefix: str  # the Label Studio URL prefix of the image paths
    training: Training
    proposal: Proposal
    query_seconds: float
    tasks: list[dict[str, Any]] = field(default_factory=list)
    stop: StopResult | None = None
    audit: AuditRound | None = None

    @property
    def trained(self) -> bool:
        return self.training.mode is TrainingMode.TRAINED


def write_to_label(path: Path, rows: list[dict[str, Any]]) -> None:
    """to_label.csv: rank, path, score (higher = label first), predicted, confidence."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "path", "score", "predicted", "confidence"])
    for r in rows:
        w.writerow([r["rank"], r["path"], repr(r["score"]), r.get("predicted", ""), r.get("confidence", "")])
    atomic_write(path, buf.getvalue())


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2) + "\n")


def write_stop_files(out: Path, stage: Path, result: StopResult) -> None:
    """The stop set (in ``out``, once) and this round's predictions (in the round's staging folder)."""
    for name, text in result.files.items():
        atomic_write((out if name == STOP_SET else stage) / name, text)


def round_tasks(lr: LabelRound, dm: LabelFolderData) -> list[dict[str, Any]]:
    """The proposal as Label Studio tasks, each with its prediction; ``model_version`` names the
    run (the output folder) and the round."""
    model_version = f"{lr.rdir.parent.resolve().name}/{lr.rdir.name}"
    active = tasks(lr.proposal.rows(dm.files), lr.prefix, lr.round, repr(lr.training.strategy), model_version)
    return active + (audit_tasks(lr.audit.drawn, lr.prefix, lr.round) if lr.audit is not None else [])


def round_summary(
    lr: LabelRound,
    dm: LabelFolderData,
    rows: list[dict[str, Any]],
    ckpt: Path | None,
    epochs: int,
    args: list[str] | None,
) -> dict[str, Any]:
    """What ``proposal.json`` says about the round (``rows``: the proposal's rows)."""
    training, rdir = lr.training, lr.rdir
    return {
        "round": lr.round,
        "mode": training.mode.value,
        "cold_start_reason": training.reason,
        "strategy": repr(training.strategy),
        "proposed": [r["path"] for r in rows],
        "to_label": str(rdir / "to_label.csv"),
        "label_studio": str(rdir / "label_studio.json"),
        "label_studio_url_prefix": lr.prefix,
        "checkpoint": None if ckpt is None else str(ckpt),
        "resumed_from": None if training.resumed is None else str(training.resumed),
        "images": dm.root.as_posix(),
        "readable_images": len(dm.files),
        "unreadable_images": [{"path": s.path, "reason": s.reason} for s in dm.scan.skipped],
        "labels_csv": None if dm.labels_path is None else str(dm.labels_path),
        "labeled": len(dm.split),
        "unlabeled": len(dm.split.unlabeled()),
        "scored": lr.proposal.candidates,
        "classes": dm.classes,
        "class_counts": dm.class_counts(),
        "label_problems": [{"line": p.line, "path": p.path, "problem": p.message} for p in dm.labels_read.problems],
        "epochs": epochs if lr.trained else 0,
        "train_accuracy": training.accuracy,
        "train_seconds": round(training.seconds, 3),
        "query_seconds": round(lr.query_seconds, 3),
        "command": list(sys.argv[1:] if args is None else args),
        **(lr.stop.fields if lr.stop is not None else {}),
        **(lr.audit.fields if lr.audit is not None else {}),
    }


def write_round(
    lr: LabelRound,
    dm: LabelFolderData,
    learner: ActiveLearner,
    config_yaml: str | None,
    epochs: int,
    args: list[str] | None,
    stage: Path,
) -> dict[str, Any]:
    """Write every file of the round into ``stage``, naming them by their place in ``lr.rdir``;
    returns the summary written to ``proposal.json``."""
    training, rdir = lr.training, lr.rdir
    rows = lr.proposal.rows(dm.files)
    ckpt = rdir / CHECKPOINT if lr.trained or training.strategy.needs_images else None
    if ckpt is not None:
        save_checkpoint(
            stage / CHECKPOINT,
            learner,
            dm.classes,
            lr.round,
            [dm.files[i] for i in dm.split.labeled.tolist()],
            trained=lr.trained or training.resumed is not None,
        )
    write_to_label(stage / "to_label.csv", rows)
    write_json(stage / "label_studio.json", lr.tasks)
    if dm.classes:
        atomic_write(stage / "label_studio_config.xml", labeling_config(dm.classes))
    if config_yaml is not None:
        atomic_write(stage / "config.yaml", config_yaml)
    if lr.stop is not None:
        write_stop_files(rdir.parent, stage, lr.stop)
    if lr.audit is not None:
        write_drawn(stage, lr.audit.drawn, lr.round)
    summary = round_summary(lr, dm, rows, ckpt, epochs, args)
    write_json(stage / "proposal.json", summary)
    return summary


def config_text(cli) -> str | None:
    """The run's resolved configuration as YAML (None, said on the console, if it cannot be dumped)."""
    try:
        return cli.parser.dump(cli.config, skip_none=False)
    except Exception as e:  # noqa: BLE001 - the run's outputs matter more than this record
        say(f"  (config.yaml not written: {e})")
        return None
