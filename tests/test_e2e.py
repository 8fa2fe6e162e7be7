"""Whole experiments through the CLI entry point, on tiny real data (scikit-learn digits)."""
import json
import os
from pathlib import Path

import pytest
import torch

from lplgrad.cli import cli_main
from lplgrad.records import read_rounds

ROOT = Path(__file__).resolve().parents[1]


def tiny_args(tmp_path, *extra):
    return [
        "fit", "--config", str(ROOT / "configs/digits.yaml"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--model.backbone.init_args.width", "4",
        "--data.initial_size", "20", "--data.query_size", "15", "--data.subset_size", "60",
        "--data.budget", "50", "--loop.epochs_per_round", "1",
        *extra,
    ]


def run_dir(tmp_path) -> Path:
    (d,) = list((tmp_path / "logs").glob("*/version_*"))
    return d


def test_three_rounds_end_to_end(tmp_path):
    cli = cli_main(tiny_args(tmp_path))
    dm = cli.datamodule
    rows = read_rounds(run_dir(tmp_path) / "rounds.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["labeled"] for r in rows] == [20, 35, 50]  # grows by exactly b
    assert [len(r["queried"]) for r in rows] == [15, 15, 0]
    labeled = dm.labeled.tolist()
    assert len(labeled) == 50 == len(set(labeled))
    queried = [i for r in rows for i in r["queried"]]
    assert len(set(queried)) == len(queried) and set(queried) <= set(labeled)
    unlabeled = set(dm.unlabeled().tolist())
    assert not unlabeled & set(labeled) and len(unlabeled) + len(labeled) == dm.pool_size
    # every round's candidates and scores are on disk, and the picks are their top scores
    for r in rows[:2]:
        lines = (run_dir(tmp_path) / "candidates" / f"round_{r['round']:03d}.csv").read_text().splitlines()[1:]
        cands = [(int(i), float(s), int(sel)) for i, s, sel in (ln.split(",") for ln in lines)]
        assert len(cands) == 60
        picked = sorted(c[0] for c in cands if c[2])
        assert picked == sorted(r["queried"])
        assert min(c[1] for c in cands if c[2]) >= max(c[1] for c in cands if not c[2])
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in rows)
    assert json.loads((run_dir(tmp_path) / "finished.json").read_text())["labeled"] == 50
    # the checkpoint holds the split as tensors and loads with weights_only=True
    ckpt = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    saved = state["ActiveDataModule"]["labeled"]
    assert isinstance(saved, torch.Tensor) and saved.tolist() == labeled


def test_tensorboard_has_accuracy_per_round(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli_main(tiny_args(tmp_path, "--data.budget", "35"))
    acc = EventAccumulator(str(run_dir(tmp_path)))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("al/test_acc")]
    assert steps == [20, 35]
    assert "al/query_seconds" in acc.Tags()["scalars"]


@pytest.mark.parametrize("strategy", ["Random", "Entropy", "Margin", "LeastConfidence",
                                      "LearningLoss", "EntGradNorm", "Coreset"])
def test_every_strategy_runs(tmp_path, strategy):
    extra = ["--model.strategy", f"lplgrad.strategies.{strategy}", "--data.budget", "35"]
    if strategy in ("Random", "Entropy", "Margin", "LeastConfidence", "EntGradNorm", "Coreset"):
        extra += ["--model.use_aux", "false"]
    cli = cli_main(tiny_args(tmp_path, *extra))
    assert len(cli.datamodule.labeled) == 35
    assert (cli.model.loss_head is None) == ("false" in extra)


def test_command_line_overrides(tmp_path):
    args = tiny_args(tmp_path, "--model.margin", "0.5", "--seed_everything", "3",
                     "--model.strategy.init_args.norm", "global", "--data.budget", "35")
    cli = cli_main(args[1:], run=False)  # without the "fit" subcommand: build only
    assert cli.model.margin == 0.5 and cli.model.strategy.norm == "global"
    assert cli.model.net.linear.out_features == 10 and cli.model.hparams.in_channels == 1  # linked from data
    cli.trainer.fit(cli.model, cli.datamodule)
    assert os.environ["PL_GLOBAL_SEED"] == "3"


def test_seed_changes_the_split(tmp_path):
    a = cli_main(tiny_args(tmp_path / "a", "--data.budget", "20"))
    b = cli_main(tiny_args(tmp_path / "b", "--data.budget", "20", "--seed_everything", "1"))
    c = cli_main(tiny_args(tmp_path / "c", "--data.budget", "20"))
    assert a.datamodule.labeled.tolist() == c.datamodule.labeled.tolist()
    assert a.datamodule.labeled.tolist() != b.datamodule.labeled.tolist()
