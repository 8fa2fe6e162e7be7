"""Export the per-round figures of a run's TensorBoard event files as PNG files.

    python scripts/export_figures.py lightning_logs/digits/version_0 --out docs/figures

writes, for one round (``--round``; default: the last round that made a query):

    per_class_acc.png  confusion_matrix.png  class_balance.png  confidence.png  scores.png

(the images the RoundFigures callback logged, decoded from the event files as they are), and
``tsne.png``: a 2-D t-SNE (scikit-learn) of the logged test-image embeddings of up to four rounds
(``--tsne-rounds``; default: four evenly spread rounds), coloured by true class, as in the paper's
Fig. 6. Only reads the run folder; needs tensorboard, numpy, matplotlib, Pillow and scikit-learn.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np


def load_events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0,
                                                     "compressedHistograms": 0})
    acc.Reload()
    return acc


def round_steps(acc) -> dict[int, int]:
    """round -> labeled-set size (the global step of the per-round figures), from ``al/labeled``."""
    if "al/labeled" not in acc.Tags()["scalars"]:
        return {}
    return {e.step: int(round(e.value)) for e in acc.Scalars("al/labeled")}


def export_images(acc, out: Path, round_: int | None) -> tuple[list[Path], int | None]:
    """Every ``figures/*`` image at the round's step (or its latest, if that round has none)."""
    tags = [t for t in acc.Tags()["images"] if t.startswith("figures/")]
    if not tags:
        return [], None
    steps = round_steps(acc)
    if round_ is not None:
        if round_ not in steps:
            raise SystemExit(f"round {round_} is not in this run (rounds: {sorted(steps)})")
        step = steps[round_]
    else:  # the last step at which every kind of image exists
        common = set.intersection(*({e.step for e in acc.Images(t)} for t in tags))
        step = max(common) if common else None
        round_ = next((r for r, s in steps.items() if s == step), None)
    written = []
    for tag in tags:
        events = acc.Images(tag)
        chosen = [e for e in events if e.step == step] or events[-1:]
        path = out / f"{tag.split('/', 1)[1].replace('/', '_')}.png"
        path.write_bytes(chosen[-1].encoded_image_string)
        written.append(path)
    return written, round_


def read_embeddings(run: Path) -> list[dict]:
    """The projector's embeddings, in round order: name, step, vectors (N, D), metadata rows."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    cfg_path = run / "projector_config.pbtxt"
    if not cfg_path.is_file():
        return []
    cfg = ProjectorConfig()
    text_format.Parse(cfg_path.read_text(), cfg)
    found = []
    for e in cfg.embeddings:
        tensors = run / e.tensor_path
        if not tensors.is_file():
            continue
        vectors = np.loadtxt(tensors, delimiter="\t", ndmin=2)
        rows: list[dict] = []
        if e.metadata_path and (run / e.metadata_path).is_file():
            with open(run / e.metadata_path, newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
        name, _, step = e.tensor_name.partition(":")
        found.append({"name": name, "step": int(step) if step.isdigit() else 0, "vectors": vectors, "meta": rows})
    return sorted(found, key=lambda d: d["step"])


def tsne_figure(embeddings: list[dict], out: Path, seed: int = 0) -> Path:
    """One t-SNE panel per embedding, points coloured by true class."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    k = len(embeddings)
    fig = Figure(figsize=(4.2 * k + 1.6, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    labels_all = sorted({r.get("label", "") for e in embeddings for r in e["meta"]},
                        key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
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
            m = np.array([l == lab for l in labs])
            if m.any():
                ax.scatter(xy[m, 0], xy[m, 1], s=6, color=colour.get(lab, "tab:blue"), label=lab)
        round_ = e["name"].replace("round_", "")
        ax.set_title(f"round {int(round_) if round_.isdigit() else round_}, {e['step']} labeled", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if labels_all and len(labels_all) <= 20:
        fig.axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, markerscale=2, frameon=False)
    fig.suptitle(f"t-SNE of M's pooled features, {len(embeddings[0]['vectors'])} test images, by true class",
                 fontsize=11)
    fig.tight_layout()
    path = out / "tsne.png"
    fig.savefig(path)
    return path


def pick_rounds(available: list[int], wanted: list[int] | None, most: int = 4) -> list[int]:
    if wanted:
        missing = [r for r in wanted if r not in available]
        if missing:
            raise SystemExit(f"no embeddings for rounds {missing} (logged: {available})")
        return wanted
    if len(available) <= most:
        return available
    pos = np.linspace(0, len(available) - 1, most).round().astype(int)
    return [available[p] for p in dict.fromkeys(pos.tolist())]


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run folder (the one holding events.out.tfevents.*)")
    p.add_argument("--out", type=Path, default=None, help="where to write the PNGs (default: RUN/figures)")
    p.add_argument("--round", type=int, default=None, help="round of the images (default: last with a query)")
    p.add_argument("--tsne-rounds", type=int, nargs="*", default=None,
                   help="rounds for the t-SNE panels (default: up to four, evenly spread)")
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE figure")
    args = p.parse_args(argv)
    run: Path = args.run
    if not any(run.glob("events.out.tfevents.*")):
        raise SystemExit(f"{run}: no TensorBoard event files here")
    out = args.out or run / "figures"
    out.mkdir(parents=True, exist_ok=True)
    written, shown = export_images(load_events(run), out, args.round)
    if shown is not None:
        print(f"images of round {shown}")
    if not args.no_tsne:
        embeddings = read_embeddings(run)
        by_round = {int(e["name"].split("_")[-1]): e for e in embeddings if e["name"].split("_")[-1].isdigit()}
        if by_round:
            rounds = pick_rounds(sorted(by_round), args.tsne_rounds)
            written.append(tsne_figure([by_round[r] for r in rounds], out))
        else:
            print("no embeddings logged in this run (figures.embeddings false?): no t-SNE figure", file=sys.stderr)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
