"""The paper's figures, per round, in the experiment's TensorBoard run.

:class:`RoundFigures` receives the rounds loop's :class:`~lplgrad.callbacks.loop.RoundEnd` event and
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

import math
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn
from torch.nn import functional as F

SPRITE_MAX = 8192  # the projector reads sprites up to 8192 x 8192 pixels


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


# ---- M on a set of images -------------------------------------------------------------------
@torch.no_grad()
def forward_all(net: nn.Module, loader: Iterable, device: torch.device, features: bool = False) -> dict[str, Tensor]:
    """M in eval mode over a loader: "conf" (max softmax probability), "pred", the labels "y", and with ``features``
    the pooled last feature map "feat" (N, D); all on the CPU. ``loader``: any iterable of (images, labels)."""
    out: dict[str, list[Tensor]] = {"conf": [], "pred": [], "y": [], "feat": []}
    was_training = net.training
    net.eval()
    try:
        for x, y in loader:
            logits, maps = net(x.to(device))
            conf, pred = logits.float().softmax(1).max(1)
            out["conf"].append(conf.cpu())
            out["pred"].append(pred.cpu())
            out["y"].append(torch.as_tensor(y).cpu())
            if features:
                out["feat"].append(maps[-1].float().mean(dim=(2, 3)).cpu())
    finally:
        net.train(was_training)
    return {k: torch.cat(v) if v else torch.zeros(0) for k, v in out.items()}


def thumbnails(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...], n_total: int) -> Tensor:
    """Normalised images (N, C, H, W) back to [0, 1], three channels, small enough for one sprite."""
    c = x.shape[1]
    m = torch.tensor(mean[:c] if len(mean) >= c else mean[:1] * c).view(1, c, 1, 1)
    s = torch.tensor(std[:c] if len(std) >= c else std[:1] * c).view(1, c, 1, 1)
    img = (x * s + m).clamp(0, 1)
    if c == 1:
        img = img.expand(-1, 3, -1, -1)
    elif c != 3:
        img = img[:, :1].expand(-1, 3, -1, -1)
    side = max(1, min(32, SPRITE_MAX // max(1, math.ceil(math.sqrt(n_total)))))
    h, w = img.shape[-2:]
    if max(h, w) > side:  # shrink
        img = F.interpolate(img, size=(max(1, h * side // max(h, w)), max(1, w * side // max(h, w))),
                            mode="bilinear", antialias=True, align_corners=False)
    elif max(h, w) * 2 <= side:  # tiny images (8x8 digits): enlarge, pixels kept sharp
        k = side // max(h, w)
        img = F.interpolate(img, scale_factor=k, mode="nearest")
    return img.clamp(0, 1).contiguous()


# ---- matplotlib (Agg, no pyplot; fixed margins instead of tight_layout, which draws twice) ------
def _figure(width: float, height: float, left: float, bottom: float, right: float = 0.15, top: float = 0.35):
    """A figure whose axes leave ``left``/``bottom``/``right``/``top`` inches of margin."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left / width, bottom=bottom / height, right=1 - right / width, top=1 - top / height)
    return fig


def render(fig) -> np.ndarray:
    """A matplotlib figure as an (H, W, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _labels_shown(names: list[str]) -> bool:
    return len(names) <= 30


def _label_margin(names: list[str]) -> float:
    """Inches below an axis for its class tick labels (rotated when long or many)."""
    if not _labels_shown(names):
        return 0.55
    longest = max(map(len, names))
    return 0.55 if longest <= 3 and len(names) <= 12 else 0.45 + 0.045 * min(longest, 20)


def _class_axis(ax, names: list[str], axis: str = "x") -> None:
    n = len(names)
    if _labels_shown(names):
        ticks, labels = list(range(n)), names
    else:  # many classes: class indices, about 20 of them
        ticks = list(range(0, n, math.ceil(n / 20)))
        labels = [str(i) for i in ticks]
    rotate = _labels_shown(names) and (n > 12 or max(map(len, names)) > 3)
    if axis == "x":
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, fontsize=8, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor" if rotate else "default")
        ax.set_xlim(-0.6, n - 0.4)
    else:
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels, fontsize=8)


def _bars(ax, values: np.ndarray, bottom: np.ndarray | None = None, **kw) -> None:
    """One bar per class; a single filled step artist when there are many (100 patches draw slowly)."""
    n = len(values)
    base = np.zeros(n) if bottom is None else bottom
    if n <= 30:
        ax.bar(np.arange(n), values, bottom=base, width=0.8, **kw)
    else:
        ax.stairs(base + values, np.arange(n + 1) - 0.5, baseline=base, fill=True, **kw)


def _width(n: int) -> float:
    return max(6.0, min(12.0, 0.3 * n + 2))


def plot_per_class_acc(acc: Tensor, names: list[str], overall: float, title: str) -> np.ndarray:
    n = len(names)
    fig = _figure(_width(n), 3.2 + _label_margin(names), left=0.7, bottom=_label_margin(names))
    ax = fig.add_subplot()
    _bars(ax, 100 * acc.numpy(), color="tab:blue")
    ax.axhline(100 * overall, color="tab:red", ls="--", lw=1, label=f"overall {100 * overall:.1f}%")
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    _class_axis(ax, names)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    return render(fig)


def plot_confusion(cm: Tensor, names: list[str], title: str) -> np.ndarray:
    n = len(names)
    cm = cm.double()
    rows = cm.sum(1, keepdim=True).clamp(min=1)
    frac = (cm / rows).numpy()
    side = max(4.0, min(8.0, 0.42 * n))
    margin = _label_margin(names) + 0.25
    fig = _figure(side + margin + 1.3, side + margin + 0.4, left=margin + 0.1, bottom=margin, right=1.3, top=0.4)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    cax = fig.add_axes((1 - 1.1 / fig.get_figwidth(), ax.get_position().y0, 0.15 / fig.get_figwidth(),
                        ax.get_position().height))
    fig.colorbar(im, cax=cax, label="fraction of the true class")
    if n <= 12:
        for i in range(n):
            for j in range(n):
                v = int(cm[i, j])
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    _class_axis(ax, names, "x")
    _class_axis(ax, names, "y")
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return render(fig)


def plot_confidence(groups: dict[str, Tensor], title: str) -> np.ndarray:
    """Overlaid density histograms of max softmax probability, one per group (the paper's Fig. 7)."""
    fig = _figure(6.0, 3.8, left=0.7, bottom=0.55)
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 41)
    colors = {"labeled": "tab:blue", "candidates": "tab:orange", "selected": "tab:red"}
    for name, v in groups.items():
        if len(v):
            ax.hist(v.numpy(), bins=bins, density=True, alpha=0.45 if name != "selected" else 0.9,
                    histtype="stepfilled" if name != "selected" else "step", lw=1.5,
                    color=colors.get(name), label=f"{name} ({len(v)})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("density")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=10)
    return render(fig)


def plot_scores(selected: np.ndarray, rest: np.ndarray, title: str) -> np.ndarray:
    fig = _figure(6.0, 3.8, left=0.7, bottom=0.55)
    ax = fig.add_subplot()
    both = np.concatenate([selected, rest])
    lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 41)
    if len(rest):
        ax.hist(rest, bins=bins, color="tab:gray", alpha=0.7, histtype="stepfilled", label=f"rest ({len(rest)})")
    if len(selected):
        ax.hist(selected, bins=bins, color="tab:red", alpha=0.8, histtype="stepfilled",
                label=f"selected ({len(selected)})")
    ax.set_xlabel("query score (higher: labelled first)")
    ax.set_ylabel("candidates")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return render(fig)


def plot_class_balance(before: Tensor, added: Tensor | None, names: list[str], title: str) -> np.ndarray:
    n = len(names)
    fig = _figure(_width(n), 3.2 + _label_margin(names), left=0.7, bottom=_label_margin(names))
    ax = fig.add_subplot()
    b = before.numpy().astype(float)
    _bars(ax, b, color="tab:blue", label=f"labeled ({int(b.sum())})")
    if added is not None:
        _bars(ax, added.numpy().astype(float), bottom=b, color="tab:red",
              label=f"picked this round ({int(added.sum())})")
    ax.set_ylabel("labeled samples")
    _class_axis(ax, names)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return render(fig)


# ---- the projector ----------------------------------------------------------------------------
def _read_projector_entries(logdir: Path) -> list[Any]:
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    path = logdir / "projector_config.pbtxt"
    if not path.is_file():
        return []
    cfg = ProjectorConfig()
    try:
        text_format.Parse(path.read_text(), cfg)
    except text_format.ParseError:
        return []
    return list(cfg.embeddings)


def _write_projector_entries(logdir: Path, entries: list[Any]) -> None:
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    cfg = ProjectorConfig()
    cfg.embeddings.extend(sorted(entries, key=lambda e: e.tensor_path))
    tmp = logdir / "projector_config.pbtxt.tmp"
    tmp.write_text(text_format.MessageToString(cfg))
    tmp.replace(logdir / "projector_config.pbtxt")


class RoundFigures(Callback):
    """Per-round figures of the paper in TensorBoard (global step = labeled-set size).

    Args:
        images: render the bar charts, the confusion matrix and the histogram overlays as images.
        confidence: compute M's confidence on the labeled set, the candidates and the picks.
        embeddings: log test-image embeddings for the projector (its t-SNE view is the paper's Fig. 6).
        embedding_points: how many test images (a fixed seeded sample, the same every round).
        embedding_seed: seed of that sample.
    """

    def __init__(self, images: bool = True, confidence: bool = True, embeddings: bool = True,
                 embedding_points: int = 500, embedding_seed: int = 0) -> None:
        if embedding_points < 1:
            raise ValueError(f"figures.embedding_points must be positive, got {embedding_points}")
        self.images, self.confidence, self.embeddings = images, confidence, embeddings
        self.embedding_points, self.embedding_seed = embedding_points, embedding_seed
        self._projector_before: list[Any] | None = None  # entries written by an earlier process (resume)
        self._sample: tuple | None = None  # (test-set size, positions, images, labels, thumbnails)

    def on_round_end(self, trainer: Trainer, pl_module: LightningModule, event) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        names = [str(n) for n in dm.dataset.class_names()]
        if len(names) != dm.num_classes:
            names = [str(i) for i in range(dm.num_classes)]
        tags = class_tags(names)
        step = int(event.step)
        title = f"round {event.round}, {event.labeled} labeled"

        selected = event.selected.cpu() if event.selected is not None else None
        trained_on = dm.labeled
        if selected is not None:  # the loop added the picks before calling us
            trained_on = dm.labeled[~torch.isin(dm.labeled, selected)]
        counts = torch.bincount(dm.labels(trained_on), minlength=dm.num_classes)
        added = torch.bincount(dm.labels(selected), minlength=dm.num_classes) if selected is not None else None
        per_class = event.metrics["per_class_acc"].float().cpu()

        scalars = {f"al/per_class_acc/{t}": float(a) for t, a in zip(tags, per_class)}
        scalars.update({f"al/class_balance/{t}": int(c) for t, c in zip(tags, counts)})
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)

        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        with torch.random.fork_rng(devices=[]):  # DataLoader iterators draw seeds from the global stream
            self._write(writer, trainer, pl_module, event, names, step, title, trained_on, selected, counts, added,
                        per_class)
        writer.flush()

    def _write(self, writer, trainer, pl_module, event, names, step, title, trained_on, selected, counts, added,
               per_class) -> None:
        dm = trainer.datamodule
        device = pl_module.device
        if self.images:
            writer.add_image("figures/per_class_acc", plot_per_class_acc(per_class, names, float(event.metrics["acc"]),
                                                                         f"Per-class test accuracy, {title}"),
                             step, dataformats="HWC")
            writer.add_image("figures/confusion_matrix",
                             plot_confusion(event.metrics["confusion"].cpu(), names, f"Confusion matrix, {title}"),
                             step, dataformats="HWC")
            writer.add_image("figures/class_balance",
                             plot_class_balance(counts, added, names, f"Labeled samples per class, {title}"),
                             step, dataformats="HWC")

        if self.confidence:
            cand = event.candidates.cpu() if event.candidates is not None else dm.candidates(event.round)
            groups = {"labeled": forward_all(pl_module.net, dm.pool_dataloader(trained_on), device)["conf"]}
            if len(cand):
                cand_conf = forward_all(pl_module.net, dm.pool_dataloader(cand), device)["conf"]
                groups["candidates"] = cand_conf
                if selected is not None and len(selected):
                    groups["selected"] = cand_conf[torch.isin(cand, selected)]
            for name, v in groups.items():
                if len(v):
                    writer.add_histogram(f"al/confidence/{name}", v, step)
            if self.images:
                writer.add_image("figures/confidence",
                                 plot_confidence(groups, f"Confidence of M, {title}"), step, dataformats="HWC")

        if event.scores is not None and event.candidates is not None:
            scores = event.scores.detach().float().cpu()
            picked = (torch.isin(event.candidates.cpu(), selected) if selected is not None
                      else torch.zeros(len(scores), dtype=torch.bool))
            finite = torch.isfinite(scores)
            parts = {"all": scores[finite], "selected": scores[finite & picked], "rest": scores[finite & ~picked]}
            for name, v in parts.items():
                if len(v):
                    writer.add_histogram(f"al/scores/{name}", v, step)
            if self.images and len(parts["all"]):
                writer.add_image("figures/scores", plot_scores(parts["selected"].numpy(), parts["rest"].numpy(),
                                                               f"Query scores, {title}"), step, dataformats="HWC")

        if self.embeddings:
            self._embed(writer, trainer, pl_module, event, names, step)

    def embedding_indices(self, n_test: int) -> Tensor:
        """The fixed sample of test-set positions (ascending), the same every round."""
        g = torch.Generator().manual_seed(self.embedding_seed)
        return torch.randperm(n_test, generator=g)[: self.embedding_points].sort().values

    def _embedding_sample(self, dm) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(test positions, images, labels, thumbnails) of the fixed sample, loaded once per run."""
        test = dm._test_view
        if self._sample is None or self._sample[0] != len(test):
            idx = self.embedding_indices(len(test))
            items = [test[int(i)] for i in idx]
            x = torch.stack([torch.as_tensor(img) for img, _ in items]).float()
            y = torch.tensor([int(t) for _, t in items], dtype=torch.long)
            thumbs = thumbnails(x, tuple(dm.dataset.mean), tuple(dm.dataset.std), len(idx))
            self._sample = (len(test), idx, x, y, thumbs)
        return self._sample[1:]

    def _embed(self, writer, trainer, pl_module, event, names, step) -> None:
        dm = trainer.datamodule
        idx, x, y, imgs = self._embedding_sample(dm)
        bs = dm.eval_batch_size
        out = forward_all(pl_module.net, [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)], pl_module.device,
                          features=True)
        meta = [[names[t], names[p], "yes" if t == p else "no", str(int(i))]
                for t, p, i in zip(y.tolist(), out["pred"].tolist(), idx)]
        self._add_embedding(writer, out["feat"], meta, imgs, step, f"round_{event.round:02d}",
                            ["label", "prediction", "correct", "test_index"])

    def _add_embedding(self, writer, feats: Tensor, meta: list, imgs: Tensor, step: int, tag: str,
                       header: list[str] | None = None) -> None:
        """``add_embedding``, keeping the projector entries of earlier processes (a resumed run) and
        replacing a round that is logged again."""
        logdir = Path(writer.get_logdir())
        if self._projector_before is None:
            self._projector_before = _read_projector_entries(logdir)
        subdir = logdir / f"{str(step).zfill(5)}" / tag
        if subdir.exists():
            shutil.rmtree(subdir)
        writer.add_embedding(feats, metadata=meta, label_img=imgs, global_step=step, tag=tag, metadata_header=header)
        # the writer rewrites projector_config.pbtxt with only the entries it added itself
        # (and lists a tag it was given twice twice): one entry per tensor file, earlier processes' included
        entries = {e.tensor_path: e for e in self._projector_before}
        entries.update({e.tensor_path: e for e in _read_projector_entries(logdir)})
        _write_projector_entries(logdir, list(entries.values()))
