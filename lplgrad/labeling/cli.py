"""``python -m lplgrad.label``: train on the labeled images of a folder, propose the next ones to label.

One run: scan the folder and check the labels CSV (problems are listed, never fatal), train
M (+ A) on the labeled images (from the last checkpoint with ``--resume``), score the unlabeled
images with the configured strategy, and write ``<out>/round_NNN/``: ``to_label.csv``,
``label_studio.json``, the checkpoint and ``proposal.json``. With too few labels to train, the
first batch is chosen at random or by Coreset on an untrained network (``--cold_start``).
The image folder is only read.

Model and trainer options are the main CLI's (``--model.*``, ``--trainer.*``, ``--config``).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionYesNo
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI

from lplgrad.allocator import keep_freed_memory
from lplgrad.labeling.checkpoint import CHECKPOINT, latest_checkpoint, load_checkpoint, round_dirs, save_checkpoint
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.label_studio import labeling_config, local_files_prefix, read_export, tasks
from lplgrad.labeling.labels import LabelingError, append_labels, normalise_path, read_rows
from lplgrad.labeling.propose import Proposal, predict, propose, write_json, write_to_label
from lplgrad.module import ActiveLearner
from lplgrad.strategies import Coreset, Random

SHOW = 20  # problems and proposals listed on the console; all of them are in proposal.json


def say(text: str = "") -> None:
    print(text, flush=True)


def _listed(items: list, show: int = SHOW) -> None:
    for item in items[:show]:
        say(f"  {item}")
    if len(items) > show:
        say(f"  ... and {len(items) - show} more (all in proposal.json)")


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


class EpochInRound(Callback):
    """One labeling run is one round: the module's epoch within the round is the trainer's epoch
    (drives A's detaching after ``model.epoch_loss`` epochs and M's schedule). Prints a short
    progress line about every fifth of the epochs."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.epoch_in_round = trainer.current_epoch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        if total is None or total < 1 or (epoch % max(1, total // 5) and epoch != total):
            return
        m = trainer.callback_metrics
        loss, acc = m.get("train/loss"), m.get("train/acc")
        say(f"  epoch {epoch:>3}/{total}" + (f"  loss {float(loss):.3f}" if loss is not None else "")
            + (f"  accuracy {100 * float(acc):5.1f}%" if acc is not None else ""))


class LabelCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--images", type=str, required=True,
                            help="The folder of images (any depth; PNG, JPEG, ...). Only read.")
        parser.add_argument("--labels", type=str | None, default=None,
                            help="The labels CSV: a header 'path,label', then one row per labeled image, "
                                 "path relative to --images. Missing or empty: no labels yet.")
        parser.add_argument("--classes", type=str | list[str] | None, default=None,
                            help="The class names, 'a,b,c' or a file with one per line; rows with other "
                                 "classes are reported and skipped. Default: the classes in the CSV.")
        parser.add_argument("--out", type=str, default="labeling",
                            help="Output folder; each run writes <out>/round_NNN/. Must not be inside --images.")
        parser.add_argument("--resume", action=ActionYesNo, default=False,
                            help="Start from the network of the latest round in --out instead of a fresh one.")
        parser.add_argument("--resume_from", type=str | None, default=None,
                            help="Start from this checkpoint (a model.ckpt of an earlier round).")
        parser.add_argument("--cold_start", type=Literal["random", "coreset"], default="random",
                            help="With too few labels to train: choose the batch at random (seeded), or by "
                                 "Coreset (k-center greedy) on the features of the untrained network.")
        parser.add_argument("--url_prefix", type=str | None, default=None,
                            help="Label Studio: prepended to each path in data.image. Default: "
                                 "/data/local-files/?d=<name of the image folder>/ (local-files serving "
                                 "with the image folder's parent as document root).")
        parser.add_argument("--import_from", type=str | None, default=None,
                            help="Before anything else, append the labels of a Label Studio export "
                                 "(JSON, JSON-MIN or CSV) to --labels.")
        parser.link_arguments("images", "data.root")
        parser.link_arguments("labels", "data.labels")
        parser.link_arguments("classes", "data.classes")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        images, out = Path(cfg.images).resolve(), Path(cfg.out).resolve()
        if out == images or images in out.parents:
            raise LabelingError(f"--out {cfg.out} is inside the image folder {cfg.images}: choose a folder "
                                f"outside it (the image folder is never written to)")
        if cfg.import_from:
            import_labels(cfg)


def import_labels(cfg) -> None:
    """Append the labels of a Label Studio export to the labels CSV (rows it already has are not repeated)."""
    if not cfg.labels:
        raise LabelingError("--import_from needs --labels: the CSV to append the imported labels to")
    root = Path(cfg.images)
    labels = Path(cfg.labels)
    if root.resolve() in labels.resolve().parents:
        raise LabelingError(f"--import_from would append to {labels}, which is inside the image folder "
                            f"{root} (never written to): keep the labels CSV outside it")
    prefix = cfg.url_prefix if cfg.url_prefix is not None else local_files_prefix(root)
    pairs, notes = read_export(cfg.import_from, prefix)
    current: dict[str, str] = {}  # the label each path has now (the later row wins)
    if labels.is_file():
        for _, raw, label in read_rows(labels):
            p = normalise_path(raw, root)
            if p and label:
                current[p] = label
    new, changed = [], []
    for p, label in pairs:
        key = normalise_path(p, root)
        if key is None or current.get(key) != label:
            new.append((p, label))
            if key is not None and key in current:
                changed.append(f"{key}: {current[key]!r} in {labels}, {label!r} in the export: "
                               f"the export's row is appended and wins")
            if key is not None:
                current[key] = label
    if new:
        append_labels(labels, new)
    say(f"Import: {cfg.import_from}: {len(pairs)} labeled tasks, {len(new)} new rows appended to {labels}, "
        f"{len(pairs) - len(new)} already there; {len(notes)} tasks left out" + (":" if notes else ""))
    _listed(notes)
    if changed:
        say(f"Import: {len(changed)} rows change an earlier label:")
        _listed(changed)


def _next_round(out: Path) -> int:
    rounds = round_dirs(out)
    return rounds[-1][0] + 1 if rounds else 1


def _report_inputs(dm: LabelFolderData) -> None:
    scan, labels = dm.scan, dm.labels
    say(f"Images: {len(scan.files)} readable in {dm.root}"
        + (f", {len(scan.skipped)} unreadable (skipped):" if scan.skipped else ""))
    _listed(scan.skipped)
    if labels.source is None:
        say("Labels: none given (--labels)")
    elif not labels.source.is_file():
        say(f"Labels: {labels.source} does not exist yet: no labels")
    else:
        counts = ", ".join(f"{c} {n}" for c, n in dm.class_counts().items())
        say(f"Labels: {labels.source}: {labels.rows} rows, {len(labels.label)} labeled images"
            + (f" ({counts})" if counts else "")
            + (f"; {_n(len(labels.problems), 'row')} with problems:" if labels.problems else ""))
        _listed(labels.problems)
    say(f"Pool: {len(dm.unlabeled())} unlabeled images")


def _run(cli: LabelCLI, args: list[str] | None) -> dict[str, Any]:
    cfg, dm, learner, trainer = cli.config, cli.datamodule, cli.model, cli.trainer
    if trainer.num_devices > 1 or trainer.num_nodes > 1:
        raise LabelingError("python -m lplgrad.label runs on one device: set --trainer.devices 1")
    out = Path(cfg.out)
    round_ = _next_round(out)
    rdir = out / f"round_{round_:03d}"
    _report_inputs(dm)

    resumed = None
    if cfg.resume_from:
        resumed = Path(cfg.resume_from)
        if not resumed.is_file():
            raise LabelingError(f"--resume_from {resumed}: no such file")
    elif cfg.resume:
        resumed = latest_checkpoint(out)
        if resumed is None:
            say(f"Resume: no checkpoint in {out} yet: starting from a fresh network")
    if resumed is not None:
        say(f"Resume: starting from {resumed}")
        _listed(load_checkpoint(resumed, learner, dm.classes))

    reason = dm.cold_start_reason()
    device = trainer.strategy.root_device
    n_lab = len(dm.labeled)
    train_acc = None
    t0 = time.monotonic()
    if reason is None:
        say(f"Training: round {round_}, {n_lab} labeled images in {len(dm.classes)} classes, "
            f"{trainer.max_epochs} epochs, {'from ' + str(resumed) if resumed else 'from a fresh network'} "
            f"(loss and accuracy on the augmented labeled images):")
        trainer.fit(learner, datamodule=dm)
        acc = trainer.callback_metrics.get("train/acc")
        train_acc = None if acc is None else float(acc)
        strategy, mode = learner.strategy, "trained"
    else:
        strategy = Random() if cfg.cold_start == "random" else Coreset()
        mode = "cold_start"
        how = (f"at random (seed {dm.effective_seed}, round {round_})" if cfg.cold_start == "random" else
               "by Coreset (k-center greedy) on the features of the "
               + ("checkpoint's" if resumed else "untrained") + " network")
        say(f"Cold start: {reason}. The network is not trained; this batch is chosen {how}.")
    train_seconds = time.monotonic() - t0

    k = min(dm.query_size, len(dm.unlabeled()))
    t0 = time.monotonic()
    learner.to(device)
    if k > 0:
        proposal = propose(learner, dm, strategy, k, round_, device)
        if mode == "trained":
            predict(learner, dm, proposal, device)
    else:
        proposal = Proposal(dm.unlabeled()[:0], dm.unlabeled()[:0].float(), 0)
        say("Every image is labeled: nothing left to propose.")
    learner.cpu()
    query_seconds = time.monotonic() - t0
    rows = proposal.rows(dm.files)

    used_network = mode == "trained" or cfg.cold_start == "coreset"
    ckpt = rdir / CHECKPOINT if used_network else None
    if ckpt is not None:
        save_checkpoint(ckpt, learner, dm.classes, round_, [dm.files[i] for i in dm.labeled.tolist()],
                        trained=mode == "trained" or (resumed is not None))
    prefix = cfg.url_prefix if cfg.url_prefix is not None else local_files_prefix(dm.root)
    write_to_label(rdir / "to_label.csv", rows)
    write_json(rdir / "label_studio.json", tasks(rows, prefix, round_, repr(strategy)))
    if dm.classes:
        (rdir / "label_studio_config.xml").write_text(labeling_config(dm.classes))
    try:
        (rdir / "config.yaml").write_text(cli.parser.dump(cfg, skip_none=False))
    except Exception as e:  # noqa: BLE001 - the run's outputs matter more than this record
        say(f"  (config.yaml not written: {e})")
    summary = {
        "round": round_,
        "mode": mode,
        "cold_start_reason": reason,
        "strategy": repr(strategy),
        "proposed": [r["path"] for r in rows],
        "to_label": str(rdir / "to_label.csv"),
        "label_studio": str(rdir / "label_studio.json"),
        "label_studio_url_prefix": prefix,
        "checkpoint": None if ckpt is None else str(ckpt),
        "resumed_from": None if resumed is None else str(resumed),
        "images": dm.root.as_posix(),
        "readable_images": len(dm.files),
        "unreadable_images": [{"path": s.path, "reason": s.reason} for s in dm.scan.skipped],
        "labels_csv": None if dm.labels_path is None else str(dm.labels_path),
        "labeled": n_lab,
        "unlabeled": len(dm.unlabeled()),
        "scored": proposal.candidates,
        "classes": dm.classes,
        "class_counts": dm.class_counts(),
        "label_problems": [{"line": p.line, "path": p.path, "problem": p.message} for p in dm.labels.problems],
        "epochs": trainer.max_epochs if mode == "trained" else 0,
        "train_accuracy": train_acc,
        "train_seconds": round(train_seconds, 3),
        "query_seconds": round(query_seconds, 3),
        "command": list(sys.argv[1:] if args is None else args),
    }
    write_json(rdir / "proposal.json", summary)

    say(f"Proposed: {len(rows)} of {len(dm.unlabeled())} unlabeled images ({proposal.candidates} scored) "
        f"by {type(strategy).__name__}" + (" (cold start)" if mode != "trained" else "") + ", best first:")
    _listed([f"{r['rank']:>3}. {r['path']}  score {r['score']:.4g}"
             + (f"  (network's guess: {r['predicted']}, p={r['confidence']:.2f})" if r.get("predicted") else "")
             for r in rows])
    say("Wrote:")
    say(f"  {rdir / 'to_label.csv'}  the {len(rows)} images to label next: rank, path, score")
    say(f"  {rdir / 'label_studio.json'}  the same as Label Studio tasks (data.image = {prefix}<path>)")
    if dm.classes:
        say(f"  {rdir / 'label_studio_config.xml'}  a Label Studio labeling config with the classes")
    say(f"  {rdir / 'proposal.json'}  this run's summary: counts, problems, classes, checkpoint")
    say(f"Checkpoint: {ckpt}  (the network that scored them; --resume continues from it)" if ckpt
        else "Checkpoint: none (a random batch uses no network)")
    if rows:
        say(f"Next: label these images, append 'path,label' rows to {dm.labels_path or 'a labels CSV (--labels)'}, "
            f"and run the same command again" + (" with --resume" if ckpt and not cfg.resume else "") + ".")
    summary["round_dir"] = str(rdir)
    return summary


def cli_main(args: list[str] | None = None) -> dict[str, Any]:
    """Run one labeling round; ``args`` replaces ``sys.argv[1:]`` (for tests). Returns the summary
    written to ``proposal.json`` (plus ``round_dir``)."""
    keep_freed_memory()
    try:
        cli = LabelCLI(
            ActiveLearner,
            LabelFolderData,
            args=args,
            run=False,
            save_config_callback=None,
            trainer_defaults={"max_epochs": 40, "num_sanity_val_steps": 0, "logger": False,
                              "enable_checkpointing": False, "callbacks": [EpochInRound()]},
            parser_kwargs={"prog": "python -m lplgrad.label", "description": __doc__.split("\n")[0]},
        )
        return _run(cli, args)
    except LabelingError as e:
        print(f"lplgrad.label: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
