"""The write step of a labeling run: ``<out>/round_NNN/`` with the proposal (``to_label.csv``, the
Label Studio tasks and labeling config), the network that scored it and ``proposal.json``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lplgrad.labeling.checkpoint import CHECKPOINT, save_checkpoint
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.label_studio import labeling_config, local_files_prefix, tasks
from lplgrad.labeling.propose import Proposal, write_json, write_to_label
from lplgrad.labeling.report import say
from lplgrad.labeling.train import Training
from lplgrad.module import ActiveLearner


def url_prefix_for(dm: LabelFolderData, url_prefix: str | None) -> str:
    return url_prefix if url_prefix is not None else local_files_prefix(dm.root)


def round_tasks(rdir: Path, round_: int, dm: LabelFolderData, training: Training, proposal: Proposal,
                url_prefix: str | None) -> list[dict[str, Any]]:
    """The proposal as Label Studio tasks, each with its prediction; ``model_version`` names the
    run (the output folder) and the round."""
    model_version = f"{rdir.parent.resolve().name}/{rdir.name}"
    return tasks(proposal.rows(dm.files), url_prefix_for(dm, url_prefix), round_, repr(training.strategy), model_version)


def write_round(rdir: Path, round_: int, dm: LabelFolderData, learner: ActiveLearner, training: Training,
                proposal: Proposal, task_list: list[dict[str, Any]], url_prefix: str | None, config_yaml: str | None,
                epochs: int, query_seconds: float, args: list[str] | None, extra: dict[str, Any],
                stage: Path | None = None) -> dict[str, Any]:
    """Write every file of the round into ``stage`` (default: ``rdir`` itself), naming them by
    their place in ``rdir``; returns the summary written to ``proposal.json``."""
    stage = rdir if stage is None else stage
    rows = proposal.rows(dm.files)
    uses_network = training.mode == "trained" or training.strategy.needs_images
    ckpt = rdir / CHECKPOINT if uses_network else None
    if ckpt is not None:
        save_checkpoint(stage / CHECKPOINT, learner, dm.classes, round_, [dm.files[i] for i in dm.split.labeled.tolist()],
                        trained=training.mode == "trained" or training.resumed is not None)
    prefix = url_prefix_for(dm, url_prefix)
    write_to_label(stage / "to_label.csv", rows)
    write_json(stage / "label_studio.json", task_list)
    if dm.classes:
        (stage / "label_studio_config.xml").write_text(labeling_config(dm.classes))
    if config_yaml is not None:
        (stage / "config.yaml").write_text(config_yaml)
    summary = {
        "round": round_,
        "mode": training.mode,
        "cold_start_reason": training.reason,
        "strategy": repr(training.strategy),
        "proposed": [r["path"] for r in rows],
        "to_label": str(rdir / "to_label.csv"),
        "label_studio": str(rdir / "label_studio.json"),
        "label_studio_url_prefix": prefix,
        "checkpoint": None if ckpt is None else str(ckpt),
        "resumed_from": None if training.resumed is None else str(training.resumed),
        "images": dm.root.as_posix(),
        "readable_images": len(dm.files),
        "unreadable_images": [{"path": s.path, "reason": s.reason} for s in dm.scan.skipped],
        "labels_csv": None if dm.labels_path is None else str(dm.labels_path),
        "labeled": len(dm.split),
        "unlabeled": len(dm.split.unlabeled()),
        "scored": proposal.candidates,
        "classes": dm.classes,
        "class_counts": dm.class_counts(),
        "label_problems": [{"line": p.line, "path": p.path, "problem": p.message} for p in dm.labels.problems],
        "epochs": epochs if training.mode == "trained" else 0,
        "train_accuracy": training.accuracy,
        "train_seconds": round(training.seconds, 3),
        "query_seconds": round(query_seconds, 3),
        "command": list(sys.argv[1:] if args is None else args),
        **extra,
    }
    write_json(stage / "proposal.json", summary)
    return summary


def config_text(cli) -> str | None:
    """The run's resolved configuration as YAML (None, said on the console, if it cannot be dumped)."""
    try:
        return cli.parser.dump(cli.config, skip_none=False)
    except Exception as e:  # noqa: BLE001 - the run's outputs matter more than this record
        say(f"  (config.yaml not written: {e})")
        return None
