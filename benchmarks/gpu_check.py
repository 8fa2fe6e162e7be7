"""Correctness on a device, before anything there is timed (step 1 of benchmarks/gpu_all.sh).

1. A 2-round experiment with ``configs/cifar10.yaml`` (sizes shrunk) on random images written in
   CIFAR-10's real on-disk format, through the on-device data path (``--data.on_device true``:
   seeded draws, the batches augmented on the device), once in fp32 and once in bf16-mixed. Both
   must finish with two rounds of records.
2. The LPLgrad scores of the fp32 run's trained weights, batched on the device, against the
   float64 one-sample loop (TF32 off for this comparison; with it on, the figure is printed too).
3. The picks of Coreset, BADGE and TypiClust (scikit-learn's and lplgrad's own k-means) from
   those weights, scored with the measures on the device, against the same scoring with the
   measures on the CPU: they must be the same.

Exits 1 if any check fails; each prints one line.

    python -m benchmarks.gpu_check.py --device cuda
    python -m benchmarks.gpu_check.py --device cpu --small     # the same checks, sized for a CPU
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # images per CIFAR batch file (5 train files), initial, query, subset, epochs, width, scored
    "full": (2000, 1000, 1000, 4000, 3, 64, 256),
    "small": (60, 40, 20, 100, 1, 8, 16),
}


def fit_args(root: Path, save: Path, device: str, precision: str, size: tuple) -> list[str]:
    _, initial, query, subset, epochs, width, _ = size
    return [
        "fit",
        "--config",
        str(ROOT / "configs" / "cifar10.yaml"),
        "--data.dataset.init_args.root",
        str(root),
        "--data.dataset.init_args.download",
        "false",
        "--data.initial_size",
        str(initial),
        "--data.query_size",
        str(query),
        "--data.subset_size",
        str(subset),
        "--data.budget",
        str(initial + query),
        "--data.num_workers",
        "0",
        "--data.on_device",
        "true",
        "--loop.epochs_per_round",
        str(epochs),
        "--model.backbone.init_args.width",
        str(width),
        "--trainer.accelerator",
        device,
        "--trainer.precision",
        precision,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(save),
        "--trainer.logger.init_args.version",
        precision,
    ]


def run_experiment(root: Path, save: Path, device: str, precision: str, size: tuple):
    """One 2-round experiment; (the trained learner, its per-round records)."""
    from lplgrad.cli import cli_main
    from tests.helpers.synthetic import checksums_skipped
    from lplgrad.records import read_rounds

    with checksums_skipped():
        cli = cli_main(fit_args(root, save, device, precision, size))
    rows = read_rounds(Path(cli.trainer.log_dir) / "rounds.jsonl")
    return cli.model, rows


def score_check(learner, device: torch.device, n: int) -> tuple[bool, str]:
    """Batched per-sample gradient-norm scores on ``device`` against the float64 loop."""
    from lplgrad.gradnorm import per_sample_sq_norms, per_sample_sq_norms_loop
    from lplgrad.gradnorm.reference import combine
    from lplgrad.numerics import MathModes
    from lplgrad.strategies.gradnorm import _entropy_of

    net = learner.net.to(device).eval()
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = combine(per_sample_sq_norms_loop(copy.deepcopy(net).cpu().double(), x.double(), _entropy_of))
    out = []
    for math in (MathModes("highest", cudnn_tf32=False), MathModes()):
        math.apply()
        got = combine(per_sample_sq_norms(net, x.to(device), _entropy_of)).double().cpu()
        out.append(((got - ref).abs() / ref.abs().clamp_min(1e-30)).max().item())
    MathModes().apply()
    ok = out[0] < 1e-4
    return (
        ok,
        f"LPLgrad scores, batched on {device.type} vs float64 loop ({n} samples): largest relative "
        f"difference {out[0]:.2e} with TF32 off (limit 1e-4), {out[1]:.2e} with a run's TF32 settings",
    )


def moved(measures, device: torch.device):
    """A measures structure (a tensor or a tuple of them) on ``device``."""
    from lplgrad.query import map_measures

    return map_measures(lambda m: m.to(device), measures)


def picks_check(learner, device: torch.device, n: int, k: int) -> list[tuple[bool, str]]:
    """Coreset, BADGE and TypiClust: the same picks from device measures as from CPU ones."""
    from lplgrad.query import map_measures
    from lplgrad.strategies import BADGE, Coreset, ScoreContext, TypiClust, select_top

    net_learner = learner.to(device).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n + k, 3, 32, 32, generator=g).to(device)
    results = []
    for strategy in (Coreset(), BADGE(), TypiClust(min_size=2), TypiClust(min_size=2, clustering="torch")):
        with torch.no_grad():
            meas = strategy.measure(net_learner, x)  # (n + k, ...) on the device
        cand = map_measures(lambda m: m[:n], meas)
        lab = map_measures(lambda m: m[n:], meas) if strategy.uses_labeled else None
        idx = torch.arange(n)
        picks = []
        for where in (device, torch.device("cpu")):
            ctx = ScoreContext(0, k, k, torch.Generator().manual_seed(2), None if lab is None else moved(lab, where))
            scores = strategy.scores(moved(cand, where), ctx).float().cpu()
            picks.append(select_top(idx, scores, k).tolist())
        same = picks[0] == picks[1]
        results.append(
            (
                same,
                f"{strategy!r}: {k} picks of {n} scored on {device.type} "
                f"{'equal' if same else 'DIFFER from'} those scored on the CPU",
            )
        )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="sizes for a CPU: a few hundred images, width 8")
    a = ap.parse_args(argv)
    from tests.helpers.synthetic import write_cifar10

    size = SIZES["small" if a.small else "full"]
    device = torch.device(a.device)
    checks: list[tuple[bool, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root, save = Path(tmp) / "cifar", Path(tmp) / "runs"
        write_cifar10(root, per_batch=size[0])
        learner = None
        for precision in ("32-true", "bf16-mixed"):
            model, rows = run_experiment(root, save, device.type, precision, size)
            learner = learner or model
            line = ", ".join(f"{r['labeled']} labels {100 * r['test_acc']:.2f}%" for r in rows)
            checks.append(
                (len(rows) == 2, f"cifar10.yaml, on-device data path, {precision}: {len(rows)} rounds ({line})")
            )
        checks.append(score_check(learner, device, size[6]))
        checks.extend(picks_check(learner, device, n=size[6] * 4, k=size[6]))
    for ok, line in checks:
        print(f"gpu_check {'ok  ' if ok else 'FAIL'} {line}", flush=True)
    failed = sum(not ok for ok, _ in checks)
    print(f"gpu_check: {len(checks) - failed} of {len(checks)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
