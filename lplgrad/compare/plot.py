"""curves.png: test accuracy against the labeled-set size, one line per method with a std band."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lplgrad.compare.aggregate import curve
from lplgrad.compare.collect import Runs
from lplgrad.compare.methods import ABLATION


def plot_curves(runs: Runs, path: str | Path, title: str = "") -> Path:
    """Mean accuracy over seeds per labeled size, shaded mean ± std (like the paper's Fig. 3/4)."""
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    for method, by_seed in runs.items():
        pts = curve(by_seed)
        x = [s for s, _ in pts]
        mean = [st.mean for _, st in pts]
        std = [st.std or 0.0 for _, st in pts]
        style = "--" if method == ABLATION.name else "-"
        (line,) = ax.plot(x, mean, style, marker="o", markersize=3, label=f"{method} ({len(by_seed)})")
        ax.fill_between(
            x,
            [m - s for m, s in zip(mean, std)],
            [m + s for m, s in zip(mean, std)],
            color=line.get_color(),
            alpha=0.15,
            linewidth=0,
        )
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test accuracy (%)")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="method (seeds)", title_fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
