"""The feature cache on a large folder (issue 26, docs/benchmarks.md): a whole labelling round with a
frozen backbone once the folder is scanned and its features computed, and the feature pass's
images/s against the backbone's plain eval forward on the same images.

It generates ``--n`` small PNG images (as :mod:`benchmarks.folder_scale` does; reused when
``--folder`` already holds them) and labels ``--labeled`` of them at random (10 classes), then:

1. the feature pass against the plain forward: the backbone's eval forward over every image of
   the folder (decoded and transformed by the labelling app's loader) against
   :meth:`~lplgrad.pool_data.PoolData.cache_features` into a fresh folder over the same images
   (the cut planned, the rows computed and written to the memory-mapped file); then the same two
   on the images already in memory (the network alone). Target: the pass at >= 0.9x the forward;
2. labelling rounds of ``python -m lplgrad.label`` (``configs/label_folder.yaml`` with the backbone
   frozen below its classifier, ``trainable_stages 0``, and ``data.feature_cache true``), run in
   this process: the first one scans the folder and computes the rows; before each next one the
   ``b`` images it proposed are labelled (at random), and the next round (``--resume``) is timed
   whole: parse, scan from the scan cache, rows from the feature cache, train the classifier and
   A, score every unlabelled image, write the round. Target: <= 10 s at 100,000 images.

    python -m benchmarks.feature_cache_speed --folder /tmp/folder100k            # 100,000 images
    python -m benchmarks.feature_cache_speed --n 2000 --rounds 2                 # a rehearsal
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.common import add_malloc_option, describe, malloc_setting
from benchmarks.folder_scale import generate

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [f"c{i}" for i in range(10)]


def round_args(folder: Path, out: Path, labels: Path, a: argparse.Namespace, resume: bool) -> list[str]:
    """A labelling round of the frozen-backbone settings."""
    args = ["--config", str(ROOT / "configs" / "label_folder.yaml"), "--images", str(folder), "--labels", str(labels)]
    args += ["--out", str(out), "--classes", ",".join(CLASSES), "--trainer.accelerator", "cpu"]
    args += ["--model.backbone.init_args.width", str(a.width), "--model.backbone.init_args.trainable_stages", "0"]
    args += ["--data.feature_cache", "true", "--trainer.max_epochs", str(a.epochs)]
    args += ["--data.batch_size", str(a.batch_size), "--data.eval_batch_size", str(a.eval_batch_size)]
    return args + (["--resume"] if resume else [])


def write_labels(path: Path, rows: list[tuple[str, str]], append: bool = False) -> None:
    with open(path, "a" if append else "w") as f:
        if not append:
            f.write("path,label\n")
        f.write("".join(f"{p},{c}\n" for p, c in rows))


def labelling_rounds(folder: Path, work: Path, a: argparse.Namespace) -> None:
    from lplgrad.label import cli_main
    from lplgrad.labeling.scan import scan_folder

    out, labels = work / "out", work / "labels.csv"
    files = scan_folder(folder, "RGB", 32, check=False).files
    if (work / "scan_cache.json").is_file():  # the first scan was made by the feature-pass measurement
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "scan_cache.json", out / "scan_cache.json")
    rng = random.Random(0)
    write_labels(labels, [(p, rng.choice(CLASSES)) for p in rng.sample(files, a.labeled)])
    for r in range(a.rounds):
        said = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(said):
            summary = cli_main(round_args(folder, out, labels, a, resume=r > 0))
        seconds = time.perf_counter() - t0
        lines = [ln for ln in said.getvalue().splitlines() if ln.startswith("Feature cache")]
        what = "first round (feature pass, train, score, write)" if r == 0 else "next round (timed whole)"
        print(
            f"round {r + 1}: {what}: {seconds:6.1f} s, {summary['labeled']} labeled, {len(summary['proposed'])} proposed"
        )
        for line in lines:
            print(f"    {line}")
        write_labels(labels, [(p, rng.choice(CLASSES)) for p in summary["proposed"]], append=True)


def feature_pass_against_forward(folder: Path, work: Path, a: argparse.Namespace) -> None:
    from lplgrad.inference import run_eval
    from lplgrad.labeling.data import LabelFolderData
    from lplgrad.module import ActiveLearner
    from lplgrad.nets import ResNet18

    dm = LabelFolderData(
        str(folder), classes=",".join(CLASSES), image_size=32, eval_batch_size=a.eval_batch_size,
        scan_cache=str(work / "scan_cache.json"), feature_cache=True,
    )  # fmt: skip
    dm.setup()
    torch.manual_seed(0)
    learner = ActiveLearner(
        backbone=lambda c, i: ResNet18(c, i, a.width, trainable_stages=0), num_classes=10, feature_cache=True
    )
    cut, cpu, n = learner.net, torch.device("cpu"), len(dm.files)
    every = torch.arange(n)

    def plain() -> float:
        t0 = time.perf_counter()
        run_eval(cut.backbone, dm.image_loader(every), cpu, lambda x, _: cut.backbone(x)[0].sum())
        return time.perf_counter() - t0

    run_eval(cut.backbone, dm.image_loader(every[: a.eval_batch_size]), cpu, lambda x, _: cut.backbone(x))  # warm-up
    before = plain()
    t0 = time.perf_counter()
    lines = dm.cache_features(cut, cpu, work / "pass_features")
    passed = time.perf_counter() - t0
    after = plain()
    forward = (before + after) / 2
    print(
        f"plain eval forward over {n} images (loader included): {n / forward:7.0f} images/s ({before:.1f}, {after:.1f} s)"
    )
    print(f"feature pass over the same images (plan, rows, file)  : {n / passed:7.0f} images/s ({passed:.1f} s)")
    print(f"    {lines[0]}")
    print(f"feature pass / plain forward: {forward / passed:.2f}x (target >= 0.9x)")
    k = min(n, a.in_memory)
    x = torch.cat([b[0] for b in dm.image_loader(every[:k])])
    with torch.no_grad():
        cut.eval()
        t_fwd, t_cut = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            for s in range(0, k, a.eval_batch_size):
                cut.backbone(x[s : s + a.eval_batch_size])
            t_fwd.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for s in range(0, k, a.eval_batch_size):
                cut.features(x[s : s + a.eval_batch_size])
            t_cut.append(time.perf_counter() - t0)
    print(
        f"the network alone on {k} images in memory (best of 3): forward {k / min(t_fwd):7.0f} images/s, "
        f"rows {k / min(t_cut):7.0f} images/s: {min(t_fwd) / min(t_cut):.2f}x"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="images in the folder")
    ap.add_argument("--folder", type=Path, default=None, help="where the images are (generated when missing)")
    ap.add_argument("--labeled", type=int, default=1000, help="images labelled before the first round")
    ap.add_argument("--rounds", type=int, default=3, help="labelling rounds (the first computes the features)")
    ap.add_argument("--width", type=int, default=16, help="the ResNet-18's width (configs/label_folder.yaml: 16)")
    ap.add_argument("--epochs", type=int, default=40, help="epochs a round (configs/label_folder.yaml: 40)")
    ap.add_argument("--batch-size", type=int, default=32, help="training batch of rows")
    ap.add_argument("--eval-batch-size", type=int, default=256, help="batch of the feature pass and the scoring")
    ap.add_argument("--in-memory", type=int, default=5000, help="images of the network-alone comparison")
    ap.add_argument("--skip-pass", action="store_true", help="only the labelling rounds")
    ap.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's choice)")
    add_malloc_option(ap)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", "LightningCLI's args parameter", UserWarning)

    print(describe(torch.device("cpu"), malloc_setting(a.malloc)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.folder or Path(tmp) / "images"
        made = generate(folder, a.n)
        found = sum(1 for _ in folder.rglob("*.png"))
        print(f"folder: {found} PNG images, 32x32" + (f" (generated in {made:.0f} s)" if made else ""))
        print(
            f"backbone: lplgrad ResNet-18 width {a.width} at 32x32, frozen below its classifier (trainable_stages 0); "
            f"{a.labeled} labeled at first, {a.epochs} epochs at batch {a.batch_size}, LPLgrad over every unlabelled image"
        )
        if not a.skip_pass:
            feature_pass_against_forward(folder, Path(tmp), a)
        labelling_rounds(folder, Path(tmp), a)


if __name__ == "__main__":
    main()
