"""Export the per-round figures of a run's TensorBoard event files as PNG files.

    python scripts/export_figures.py lightning_logs/digits/version_0 --out docs/figures

writes, for one round (``--round``; default: the last round that made a query):

    per_class_acc.png  confusion_matrix.png  class_balance.png  confidence.png  scores.png

(the images the RoundFigures callback logged, decoded from the event files as they are), and
``tsne.png``: a 2-D t-SNE (scikit-learn) of the logged test-image embeddings of up to four rounds
(``--tsne-rounds``; default: four evenly spread rounds), coloured by true class, as in the paper's
Fig. 6. Only reads the run folder. The drawing is :mod:`lplgrad.plots`', the projector files are read by
:mod:`lplgrad.projector`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lplgrad.plots import tsne_figure
from lplgrad.projector import read_embeddings


def load_events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(
        str(run), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0, "compressedHistograms": 0}
    )
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
    p.add_argument(
        "--tsne-rounds",
        type=int,
        nargs="*",
        default=None,
        help="rounds for the t-SNE panels (default: up to four, evenly spread)",
    )
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
            print(
                "no embeddings logged in this run (RoundFigures with embeddings false?): no t-SNE figure",
                file=sys.stderr,
            )
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
