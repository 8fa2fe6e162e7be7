"""The figures of a run, drawn with matplotlib: per-class accuracy, confusion matrix, confidence
and score histograms, class balance (each as an RGB array for TensorBoard) and the t-SNE panels
of logged embeddings (a PNG file). Used by :class:`~lplgrad.callbacks.figures.RoundFigures` and
``scripts/export_figures.py``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from torch import Tensor


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
        ax.set_xticklabels(
            labels,
            fontsize=8,
            rotation=45 if rotate else 0,
            ha="right" if rotate else "center",
            rotation_mode="anchor" if rotate else "default",
        )
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
    cax = fig.add_axes(
        (1 - 1.1 / fig.get_figwidth(), ax.get_position().y0, 0.15 / fig.get_figwidth(), ax.get_position().height)
    )
    fig.colorbar(im, cax=cax, label="fraction of the true class")
    if n <= 12:
        for i in range(n):
            for j in range(n):
                v = int(cm[i, j])
                if v:
                    ax.text(
                        j,
                        i,
                        str(v),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black",
                    )
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
            ax.hist(
                v.numpy(),
                bins=bins,
                density=True,
                alpha=0.45 if name != "selected" else 0.9,
                histtype="stepfilled" if name != "selected" else "step",
                lw=1.5,
                color=colors.get(name),
                label=f"{name} ({len(v)})",
            )
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
        ax.hist(
            selected, bins=bins, color="tab:red", alpha=0.8, histtype="stepfilled", label=f"selected ({len(selected)})"
        )
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
        _bars(
            ax, added.numpy().astype(float), bottom=b, color="tab:red", label=f"picked this round ({int(added.sum())})"
        )
    ax.set_ylabel("labeled samples")
    _class_axis(ax, names)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return render(fig)


def tsne_figure(embeddings: list[dict], out: Path, seed: int = 0) -> Path:
    """One t-SNE panel per embedding, points coloured by true class."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    k = len(embeddings)
    fig = Figure(figsize=(4.2 * k + 1.6, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    labels_all = sorted(
        {r.get("label", "") for e in embeddings for r in e["meta"]},
        key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s),
    )
    n_lab = len(labels_all)
    cmap = matplotlib.colormaps["tab10" if n_lab <= 10 else "tab20" if n_lab <= 20 else "turbo"]
    colour = {lab: cmap(i) if n_lab <= 20 else cmap(i / max(1, n_lab - 1)) for i, lab in enumerate(labels_all)}
    for i, e in enumerate(embeddings):
        x = e["vectors"]
        n = len(x)
        perplexity = float(max(2.0, min(30.0, (n - 1) / 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        ax = fig.add_subplot(1, k, i + 1)
        labs = [r.get("label", "") for r in e["meta"]] if e["meta"] else [""] * n
        for lab in labels_all or [""]:
            m = np.array([name == lab for name in labs])
            if m.any():
                ax.scatter(xy[m, 0], xy[m, 1], s=6, color=colour.get(lab, "tab:blue"), label=lab)
        round_ = e["name"].replace("round_", "")
        ax.set_title(f"round {int(round_) if round_.isdigit() else round_}, {e['step']} labeled", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if labels_all and len(labels_all) <= 20:
        fig.axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, markerscale=2, frameon=False)
    fig.suptitle(
        f"t-SNE of M's pooled features, {len(embeddings[0]['vectors'])} test images, by true class", fontsize=11
    )
    fig.tight_layout()
    path = out / "tsne.png"
    fig.savefig(path)
    return path
