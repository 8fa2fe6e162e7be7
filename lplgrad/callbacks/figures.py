"""The paper's figures, per round, in the experiment's TensorBoard run.

:class:`RoundFigures` receives the rounds loop's :class:`~lplgrad.callbacks.base.RoundEnd` event and
writes, at global step = the labeled-set size the round trained on (the x axis of ``al/test_acc``):

- ``al/per_class_acc/<class>`` scalars and a bar chart (the paper's Fig. 8), the confusion matrix;
- the confidence (max softmax probability) of M on the labeled set the round trained on, on the
  candidate subset S (a random sample of the unlabeled pool) and on the samples the query picked,
  as histograms and as one overlaid plot (Fig. 7);
- the query scores of all candidates, of the picked ones and of the rest;
- M's pooled penultimate features of a fixed, seeded sample of test images, with labels,
  predictions and thumbnails, for the projector's t-SNE view (Fig. 6);
- the class balance of the labeled set (counts per class, with the round's picks stacked on top).

Only global rank 0 writes. Scalars go to every logger; images, histograms and embeddings only to a
TensorBoard logger (none: they are skipped). The run's random streams are left untouched, so a run
gives the same selections and accuracies with or without these figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn

from lplgrad import plots, projector
from lplgrad.callbacks.base import RoundCallback, RoundEnd
from lplgrad.errors import ConfigError
from lplgrad.inference import run_eval
from lplgrad.nets.pool import pooled


def tag_name(name: str) -> str:
    """A class name as one TensorBoard tag component (no slashes or spaces)."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(name)).strip("_") or "_"


def class_tags(names: list[str]) -> list[str]:
    """Tag components for the classes, made unique by appending the class index where needed."""
    tags = [tag_name(n) for n in names]
    seen: dict[str, int] = {}
    for t in tags:
        seen[t] = seen.get(t, 0) + 1
    return [f"{t}_{i}" if seen[t] > 1 else t for i, t in enumerate(tags)]


def tensorboard_writer(trainer: Trainer):
    """The SummaryWriter of the trainer's first TensorBoard logger, or None."""
    from lightning.fabric.loggers import TensorBoardLogger as FabricTB
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, (TensorBoardLogger, FabricTB)):
            return logger.experiment
    return None


@torch.no_grad()
def forward_all(net: nn.Module, loader: Iterable, device: torch.device, features: bool = False) -> dict[str, Tensor]:
    """M in eval mode over a loader: "conf" (max softmax probability), "pred", the labels "y", and with ``features``
    the pooled last feature map "feat" (N, D); all on the CPU. ``loader``: any iterable of (images, labels)."""

    def step(x: Tensor, y) -> dict[str, Tensor]:
        logits, maps = net(x)
        conf, pred = logits.float().softmax(1).max(1)
        row = {"conf": conf.cpu(), "pred": pred.cpu(), "y": torch.as_tensor(y).cpu()}
        if features:
            row["feat"] = pooled(maps[-1]).float().cpu()
        return row

    rows = run_eval(net, loader, device, step)
    keys = ("conf", "pred", "y") + (("feat",) if features else ())
    return {k: torch.cat([r[k] for r in rows]) if rows else torch.zeros(0) for k in keys}


@dataclass
class _RoundView:
    """One round as the figures see it."""

    event: RoundEnd
    names: list[str]  # class names
    trained_on: Tensor  # (n,) the labeled set the round trained on
    counts: Tensor  # (C,) its class counts
    added: Tensor | None  # (C,) class counts of the picks
    per_class: Tensor  # (C,) per-class test accuracy

    @property
    def step(self) -> int:
        return int(self.event.step)

    @property
    def title(self) -> str:
        return f"round {self.event.round}, {self.event.labeled} labeled"

    @property
    def selected(self) -> Tensor | None:
        return self.event.selected.cpu() if self.event.selected is not None else None


def _view(dm, event: RoundEnd) -> _RoundView:
    names = [str(n) for n in dm.dataset.class_names()]
    if len(names) != dm.num_classes:
        names = [str(i) for i in range(dm.num_classes)]
    selected = event.selected.cpu() if event.selected is not None else None
    trained_on = event.labeled_before
    counts = torch.bincount(dm.labels(trained_on), minlength=dm.num_classes)
    added = torch.bincount(dm.labels(selected), minlength=dm.num_classes) if selected is not None else None
    return _RoundView(event, names, trained_on, counts, added, event.metrics["per_class_acc"].float().cpu())


class RoundFigures(RoundCallback):
    """Per-round figures of the paper in TensorBoard (global step = labeled-set size).

    Args:
        images: render the bar charts, the confusion matrix and the histogram overlays as images.
        confidence: compute M's confidence on the labeled set, the candidates and the picks.
        embeddings: log test-image embeddings for the projector (its t-SNE view is the paper's Fig. 6).
        embedding_points: how many test images (a fixed seeded sample, the same every round).
        embedding_seed: seed of that sample.
    """

    def __init__(
        self,
        images: bool = True,
        confidence: bool = True,
        embeddings: bool = True,
        embedding_points: int = 500,
        embedding_seed: int = 0,
    ) -> None:
        if embedding_points < 1:
            raise ConfigError(f"RoundFigures: embedding_points must be positive, got {embedding_points}")
        self.images, self.confidence, self.embeddings = images, confidence, embeddings
        self.embedding_points, self.embedding_seed = embedding_points, embedding_seed
        self._projector_before: list[Any] | None = None  # entries written by an earlier process (resume)
        self._sample: tuple | None = None  # (test-set size, positions, images, labels, thumbnails)

    def on_round_end(self, trainer: Trainer, pl_module: LightningModule, event: RoundEnd) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        r = _view(dm, event)
        tags = class_tags(r.names)
        scalars = {f"al/per_class_acc/{t}": float(a) for t, a in zip(tags, r.per_class)}
        scalars.update({f"al/class_balance/{t}": int(c) for t, c in zip(tags, r.counts)})
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=r.step)
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        with torch.random.fork_rng(devices=[]):  # DataLoader iterators draw seeds from the global stream
            if self.images:
                self._charts(writer, r)
            if self.confidence:
                self._confidence(writer, pl_module, dm, r)
            self._scores(writer, r)
            if self.embeddings:
                self._embed(writer, pl_module, dm, r)
        writer.flush()

    def _charts(self, writer, r: _RoundView) -> None:
        acc = float(r.event.metrics["acc"])
        charts = {
            "per_class_acc": plots.plot_per_class_acc(r.per_class, r.names, acc, f"Per-class test accuracy, {r.title}"),
            "confusion_matrix": plots.plot_confusion(
                r.event.metrics["confusion"].cpu(), r.names, f"Confusion matrix, {r.title}"
            ),
            "class_balance": plots.plot_class_balance(
                r.counts, r.added, r.names, f"Labeled samples per class, {r.title}"
            ),
        }
        for name, image in charts.items():
            writer.add_image(f"figures/{name}", image, r.step, dataformats="HWC")

    def _confidence(self, writer, pl_module: LightningModule, dm, r: _RoundView) -> None:
        device = pl_module.device
        cand = (
            r.event.candidates.cpu()
            if r.event.candidates is not None
            else dm.split.candidates(r.event.round, dm.subset_size)
        )
        groups = {"labeled": forward_all(pl_module.net, dm.pool_dataloader(r.trained_on), device)["conf"]}
        if len(cand):
            cand_conf = forward_all(pl_module.net, dm.pool_dataloader(cand), device)["conf"]
            groups["candidates"] = cand_conf
            if r.selected is not None and len(r.selected):
                groups["selected"] = cand_conf[torch.isin(cand, r.selected)]
        for name, v in groups.items():
            if len(v):
                writer.add_histogram(f"al/confidence/{name}", v, r.step)
        if self.images:
            writer.add_image(
                "figures/confidence",
                plots.plot_confidence(groups, f"Confidence of M, {r.title}"),
                r.step,
                dataformats="HWC",
            )

    def _scores(self, writer, r: _RoundView) -> None:
        event = r.event
        if event.scores is None or event.candidates is None:
            return
        scores = event.scores.detach().float().cpu()
        picked = (
            torch.isin(event.candidates.cpu(), r.selected)
            if r.selected is not None
            else torch.zeros(len(scores), dtype=torch.bool)
        )
        finite = torch.isfinite(scores)
        parts = {"all": scores[finite], "selected": scores[finite & picked], "rest": scores[finite & ~picked]}
        for name, v in parts.items():
            if len(v):
                writer.add_histogram(f"al/scores/{name}", v, r.step)
        if self.images and len(parts["all"]):
            writer.add_image(
                "figures/scores",
                plots.plot_scores(parts["selected"].numpy(), parts["rest"].numpy(), f"Query scores, {r.title}"),
                r.step,
                dataformats="HWC",
            )

    def embedding_indices(self, n_test: int) -> Tensor:
        """The fixed sample of test-set positions (ascending), the same every round."""
        g = torch.Generator().manual_seed(self.embedding_seed)
        return torch.randperm(n_test, generator=g)[: self.embedding_points].sort().values

    def _embedding_sample(self, dm) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(test positions, images, labels, thumbnails) of the fixed sample, loaded once per run."""
        test = dm.test_view
        if self._sample is None or self._sample[0] != len(test):
            idx = self.embedding_indices(len(test))
            items = [test[int(i)] for i in idx]
            x = torch.stack([torch.as_tensor(img) for img, _ in items]).float()
            y = torch.tensor([int(t) for _, t in items], dtype=torch.long)
            thumbs = projector.thumbnails(x, tuple(dm.dataset.mean), tuple(dm.dataset.std), len(idx))
            self._sample = (len(test), idx, x, y, thumbs)
        return self._sample[1:]

    def _embed(self, writer, pl_module: LightningModule, dm, r: _RoundView) -> None:
        idx, x, y, imgs = self._embedding_sample(dm)
        bs = dm.eval_batch_size
        out = forward_all(
            pl_module.net,
            [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)],
            pl_module.device,
            features=True,
        )
        meta = [
            [r.names[t], r.names[p], "yes" if t == p else "no", str(int(i))]
            for t, p, i in zip(y.tolist(), out["pred"].tolist(), idx)
        ]
        if self._projector_before is None:
            self._projector_before = projector.read_entries(writer.get_logdir())
        projector.add_embedding(
            writer,
            out["feat"],
            meta,
            imgs,
            r.step,
            f"round_{r.event.round:02d}",
            ["label", "prediction", "correct", "test_index"],
            self._projector_before,
        )
