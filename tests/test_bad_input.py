"""Bad input stops before training with one clear line and a non-zero exit, and overwrites nothing."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import synthetic
from helpers.tiny import tiny_fit_args
from lplgrad.cli import cli_main

ROOT = Path(__file__).resolve().parents[1]


def base(tmp_path, *extra):
    return tiny_fit_args(tmp_path / "logs", *extra, query=10, subset=40, budget=30)


def fails(args, capsys, code=2) -> str:
    with pytest.raises(SystemExit) as e:
        cli_main(args)
    assert e.value.code == code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lplgrad: error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--data.budget", "5000"], "budget (5000) is larger than the pool"),
        (["--data.initial_size", "2000", "--data.budget", "2000"], "larger than the pool"),
        (["--data.query_size", "50", "--data.subset_size", "40"], "query_size (50) is larger than data.subset_size"),
        (["--data.query_size", "0"], "query_size must be positive"),
        (["--data.budget", "-5"], "budget must be positive"),
        (["--data.initial_size", "0"], "initial_size must be positive"),
        (["--loop.epochs_per_round", "0"], "epochs_per_round must be positive"),
        (["--data.initial_size", "40"], "initial_size (40) is larger than data.budget"),
        (["--strategy", "lplgrad.strategies.Nope"], "has no attribute 'Nope'"),
        (["--model.backbone", "lplgrad.nets.Nope"], "lplgrad.nets.Nope"),
        (["--strategy", "lplgrad.strategies.LearningLoss", "--model.use_aux", "false"], "set model.use_aux true"),
        (["--strategy.init_args.norm", "l1"], "strategy.init_args.norm"),
    ],
)
def test_bad_settings(tmp_path, capsys, extra, words):
    line = fails(base(tmp_path, *extra), capsys)
    assert words in line
    assert not list((tmp_path / "logs").rglob("*.ckpt"))  # stopped before training


def folder_args(tmp_path, root):
    return base(
        tmp_path,
        "--data.dataset",
        "lplgrad.datasets.ImageFolder",
        "--data.dataset.init_args.root",
        str(root),
        "--data.initial_size",
        "4",
        "--data.query_size",
        "2",
        "--data.subset_size",
        "4",
        "--data.budget",
        "6",
    )


def test_folder_missing_empty_corrupt_or_unknown_class(tmp_path, capsys):
    assert "no class folders" in fails(folder_args(tmp_path, tmp_path / "none"), capsys)
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    assert "a classifier needs at least 2" in fails(folder_args(tmp_path, empty), capsys)
    (empty / "train" / "b").mkdir(parents=True)
    assert "holds no images" in fails(folder_args(tmp_path, empty), capsys)
    root = tmp_path / "imgs"
    synthetic.write_image_folder(root, classes=3, per_class=4)
    (root / "train" / "class_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    line = fails(folder_args(tmp_path, root), capsys)
    assert "1 unreadable or corrupt image(s)" in line and "broken.png" in line
    (root / "train" / "class_1" / "broken.png").unlink()
    (root / "test" / "class_9").mkdir()
    Image.new("RGB", (8, 8)).save(root / "test" / "class_9" / "x.png")
    assert "classes that train/ lacks: ['class_9']" in fails(folder_args(tmp_path, root), capsys)


def test_labels_outside_num_classes(tmp_path, capsys, monkeypatch):
    from lplgrad.datasets import Digits

    monkeypatch.setattr(Digits, "num_classes", 5)  # the data has labels 0..9
    assert "num_classes is 5" in fails(base(tmp_path), capsys)


def test_nan_loss_stops_with_round_and_epoch_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    args = base(
        tmp_path,
        "--model.backbone",
        "helpers.nan_net.NaNAfter",
        "--model.backbone.init_args.after",
        "6",
        "--loop.epochs_per_round",
        "3",
        "--data.batch_size",
        "10",
    )  # 2 batches an epoch: NaN in epoch 3
    line = fails(args, capsys, code=3)
    assert "became nan in round 1, epoch 0 of the round (global epoch 3)" in line
    (ckpt,) = list((tmp_path / "logs").rglob("last.ckpt"))
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )


def test_finished_run_is_not_overwritten_without_the_flag(tmp_path, capsys):
    args = base(tmp_path, "--trainer.logger.init_args.version", "mine")
    cli_main(args)
    rounds = tmp_path / "logs" / "digits" / "mine" / "rounds.jsonl"
    before = rounds.read_bytes(), rounds.stat().st_mtime_ns
    assert "already holds a finished experiment" in fails(args, capsys)
    assert (rounds.read_bytes(), rounds.stat().st_mtime_ns) == before
    cli_main(args + ["--overwrite", "true", "--seed_everything", "5"])
    assert rounds.read_bytes() != before[0]
    assert len(list(rounds.parent.glob("events.out.tfevents.*"))) == 1  # the old run's events are gone too


def test_check_labels_names_the_split_and_the_range():
    from lplgrad.datasets import Images, check_labels
    from lplgrad.errors import DataError

    def split(targets):
        return Images(lambda i: Image.new("L", (4, 4)), torch.tensor(targets, dtype=torch.long), "L")

    check_labels(split([0, 2, 1]), 3, "the train split of X")  # in range: silent
    with pytest.raises(DataError, match="the test split of X has labels from -1 to 2 but num_classes is 3"):
        check_labels(split([-1, 2]), 3, "the test split of X")
    with pytest.raises(DataError, match="the train split of X is empty"):
        check_labels(split([]), 3, "the train split of X")
