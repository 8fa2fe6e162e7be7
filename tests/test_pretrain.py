"""Self-supervised pretraining (``python -m lplgrad pretrain``, docs/pretraining.md), tiny: the
weights file it writes starts an active-learning run, labels are never read, an interrupted run
resumes, every expected failure is one line, and both configs of configs/pretrain/ run
(pretrain/fashion_mnist_simclr.yaml on the installed Fashion-MNIST, pretrain/label_folder_simclr.yaml
on a folder of shapes)."""

from pathlib import Path

import pytest
import torch

from helpers.fashion import require_fashion_mnist
from helpers.shapes import TINY_LABEL, make_shapes
from helpers.tiny import tiny_fit_args
from helpers.unlabelled import LabelsRead, Untouchable
from lplgrad.cli import cli_main
from lplgrad.label import cli_main as label_main
from lplgrad.nets import ResNet18
from lplgrad.pretrain.module import Pretrainer
from lplgrad.records import read_rounds

pytest.importorskip("lightly")

ROOT = Path(__file__).resolve().parents[1]
C = ROOT / "configs"
QUIET = [
    "--trainer.accelerator",
    "cpu",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def digits_args(logs: Path, *extra: str, dataset: str = "lplgrad.datasets.Digits", epochs: int = 1) -> list[str]:
    """A pretraining on scikit-learn's digits: ResNet-18 of width 4, batches of 32, 3 steps an epoch."""
    return [
        "pretrain",
        "--data.dataset",
        dataset,
        "--model.backbone",
        "lplgrad.nets.ResNet18",
        "--model.backbone.init_args.width",
        "4",
        "--data.batch_size",
        "32",
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.limit_train_batches",
        "3",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.logger",
        "lightning.pytorch.loggers.TensorBoardLogger",
        "--trainer.logger.init_args.save_dir",
        str(logs),
        "--trainer.logger.init_args.name",
        "digits",
        "--trainer.logger.init_args.version",
        "ssl",
        "--seed_everything",
        "0",
        *QUIET,
        *extra,
    ]


def tensorboard_tags(run: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_simclr_weights_start_an_active_learning_run(tmp_path, capsys):
    cli_main(digits_args(tmp_path / "ssl"))
    run = tmp_path / "ssl" / "digits" / "ssl"
    out = capsys.readouterr().out
    assert "Pretraining ResNet18 with SimCLR on Digits's 1,347 training images (labels are not read)" in out
    assert "Epoch   1/1 | loss " in out and f"--model.backbone.init_args.weights {run / 'backbone.pt'}" in out
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "finished.json").is_file()
    assert {"pretrain/loss_step", "pretrain/loss_epoch", "pretrain/lr", "pretrain/spread"} <= tensorboard_tags(run)
    weights = torch.load(run / "backbone.pt", weights_only=True)
    fresh = ResNet18(10, 1, width=4).state_dict()
    assert weights.keys() == fresh.keys() and all(weights[k].shape == fresh[k].shape for k in fresh)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(saved["net.conv1.weight"], weights["conv1.weight"])
    assert torch.equal(saved["net.linear.weight"], weights["linear.weight"])  # the head is frozen: as built

    def fit_args(logs: Path, *extra: str, **kw) -> list[str]:
        return tiny_fit_args(
            logs,
            "--model.backbone.class_path",
            "lplgrad.nets.ResNet18",
            "--model.backbone.init_args.width",
            "4",
            "--model.backbone.init_args.weights",
            str(run / "backbone.pt"),
            *extra,
            **kw,
        )

    built = cli_main(fit_args(tmp_path / "built", subcommand=False), run=False).model.net
    assert built.pretrained
    for k, v in built.state_dict().items():  # every tensor is the file's (the classifier is made anew)
        assert k.startswith("linear.") or torch.equal(v, weights[k]), k
    # a whole round, with everything but the classifier frozen: the first layer stays the file's
    fitted = cli_main(fit_args(tmp_path / "al", "--model.backbone.init_args.trainable_stages", "0", budget=35)).model
    assert torch.equal(fitted.net.conv1.weight.detach(), weights["conv1.weight"])
    (al_run,) = (tmp_path / "al" / "digits").iterdir()
    assert [r["labeled"] for r in read_rounds(al_run / "rounds.jsonl")] == [20, 35]


def test_byol_runs_and_writes_the_online_backbone(tmp_path, capsys):
    cli = cli_main(digits_args(tmp_path, "--model.method", "byol"))
    out = capsys.readouterr().out
    assert "with BYOL" in out and "Epoch   1/1" in out
    model = cli.model
    weights = torch.load(tmp_path / "digits" / "ssl" / "backbone.pt", weights_only=True)
    assert torch.equal(weights["conv1.weight"], model.net.conv1.weight.detach())
    assert not torch.equal(model.target_net.conv1.weight, model.net.conv1.weight)  # the EMA copy lags
    assert "pretrain/ema_momentum" in tensorboard_tags(tmp_path / "digits" / "ssl")


def test_labels_are_never_read(tmp_path):
    """The digits with every label replaced by a sentinel that raises (and counts) on any use."""
    from helpers.unlabelled import DigitsWithoutLabels

    images = DigitsWithoutLabels().load(train=True)
    with pytest.raises(LabelsRead):  # the sentinel works: an ordinary read of an item fails
        images[0]
    before = Untouchable.reads
    cli_main(digits_args(tmp_path, dataset="helpers.unlabelled.DigitsWithoutLabels"))
    assert Untouchable.reads == before
    assert (tmp_path / "digits" / "ssl" / "backbone.pt").is_file()


def test_an_interrupted_run_resumes_with_ckpt_path_last(tmp_path, monkeypatch, capsys):
    run = tmp_path / "digits" / "ssl"

    def crash(self):
        if self.current_epoch == 1:
            raise KeyError("the machine went down")

    with monkeypatch.context() as m:
        m.setattr(Pretrainer, "on_train_epoch_start", crash)
        with pytest.raises(KeyError):
            cli_main(digits_args(tmp_path, epochs=2))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 3)
    assert not (run / "backbone.pt").exists() and not (run / "finished.json").exists()
    capsys.readouterr()
    cli = cli_main(digits_args(tmp_path, "--ckpt_path", "last", epochs=2))
    out = capsys.readouterr().out
    assert "(resumed after epoch 1)" in out and "Epoch   2/2" in out and "Epoch   1/2" not in out
    assert cli.trainer.global_step == 6 and (run / "finished.json").is_file()
    # a finished run is not started over by accident, and is with --overwrite true
    with pytest.raises(SystemExit):
        cli_main(digits_args(tmp_path, epochs=2))
    assert "already holds a pretraining" in capsys.readouterr().err
    cli_main(digits_args(tmp_path, "--overwrite", "true"))
    assert "Epoch   1/1" in capsys.readouterr().out
    other = digits_args(tmp_path, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--model.method", "byol")
    assert "is a simclr pretraining; this config's model.method is byol" in one_line_error(capsys, other)


def one_line_error(capsys, args: list[str], prog: str = "lplgrad pretrain", code: int = 2) -> str:
    with pytest.raises(SystemExit) as e:
        cli_main(args)
    assert e.value.code == code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_resumed_pretraining_equals_an_uninterrupted_one(tmp_path, monkeypatch, workers):
    """The checkpoint carries the random state the next epoch starts from (the shuffle, and the
    views: drawn in the training process, or by workers seeded from it every epoch), so a run
    stopped after epoch 1 and resumed writes the same backbone as one that ran through."""

    def backbone(logs, *extra):
        cli_main(digits_args(logs, "--data.num_workers", str(workers), *extra, epochs=2))
        return torch.load(logs / "digits" / "ssl" / "backbone.pt", weights_only=True)

    def crash(self):
        if self.current_epoch == 1:
            raise KeyError("the machine went down")

    through = backbone(tmp_path / "through")
    with monkeypatch.context() as m:
        m.setattr(Pretrainer, "on_train_epoch_start", crash)
        with pytest.raises(KeyError):
            backbone(tmp_path / "stopped")
    resumed = backbone(tmp_path / "stopped", "--ckpt_path", "last")
    assert through.keys() == resumed.keys()
    assert all(torch.equal(through[k], resumed[k]) for k in through)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--data.dataset", "null"], "give exactly one, not neither"),
        (["--data.folder", "photos"], "give exactly one, not both"),
        (["--trainer.max_epochs", "-1"], "trainer.max_epochs must be a positive number"),
        (["--ckpt_path", "last"], "--ckpt_path last: there is no run folder"),
        (
            ["--data.batch_size", "4096"],
            "data.batch_size (4096) is larger than Digits's 1,347 training images: lower it",
        ),
        (["--optimizer", "torch.optim.Adam"], "--optimizer is not an option of pretrain"),
        (["--model.method", "dino"], "model.method"),
        (["--model.temperature", "0"], "model.temperature must be positive"),
        (["--trainer.enable_checkpointing", "false"], "trainer.enable_checkpointing false: pretraining saves"),
    ],
)
def test_pretraining_errors_are_one_line(tmp_path, capsys, extra, expected):
    assert expected in one_line_error(capsys, digits_args(tmp_path, *extra))


def test_missing_folder_and_wrong_weights_are_one_line(tmp_path, capsys):
    folder = ["--data.dataset", "null", "--data.folder", str(tmp_path / "nothing")]
    assert "does not exist" in one_line_error(capsys, digits_args(tmp_path, *folder))
    fit = tiny_fit_args(tmp_path / "al", "--model.backbone.class_path", "lplgrad.nets.ResNet18")
    line = one_line_error(capsys, fit + ["--model.backbone.init_args.weights", str(tmp_path / "none.pt")], "lplgrad")
    assert f"weights file {tmp_path / 'none.pt'} does not exist" in line
    torch.save(ResNet18(10, 1, width=8).state_dict(), tmp_path / "wide.pt")  # another width
    line = one_line_error(capsys, fit + ["--model.backbone.init_args.weights", str(tmp_path / "wide.pt")], "lplgrad")
    assert "does not fit this backbone" in line


def config_args(config: str, logs: Path, *extra: str) -> list[str]:
    return [
        "pretrain",
        "--config",
        str(C / config),
        "--trainer.logger.init_args.save_dir",
        str(logs),
        "--model.backbone.init_args.width",
        "2",
        "--data.batch_size",
        "8",
        "--data.num_workers",
        "0",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.max_epochs",
        "1",
        *QUIET,
        *extra,
    ]


def test_fashion_mnist_config_runs_tiny(tmp_path, capsys):
    require_fashion_mnist()
    cli_main(config_args("pretrain/fashion_mnist_simclr.yaml", tmp_path))
    assert "on FashionMNIST's 60,000 training images" in capsys.readouterr().out
    weights = torch.load(tmp_path / "pretrain_fashion_mnist" / "simclr" / "backbone.pt", weights_only=True)
    assert weights["conv1.weight"].shape == (2, 1, 3, 3)  # one channel, as the active-learning config's


def test_label_folder_config_runs_tiny_and_the_labelling_app_starts_from_it(tmp_path, capsys):
    images = tmp_path / "shapes"
    make_shapes(images, n=20)  # 20 images, a corrupt PNG and a text file
    cli_main(config_args("pretrain/label_folder_simclr.yaml", tmp_path, "--data.folder", str(images)))
    out = capsys.readouterr().out
    assert f"on the 20 images under {images} (1 unreadable files skipped)" in out
    weights = tmp_path / "pretrain_label_folder" / "simclr" / "backbone.pt"
    assert torch.load(weights, weights_only=True)["conv1.weight"].shape == (2, 3, 3, 3)
    first = label_main(
        [
            "--config",
            str(C / "label_folder.yaml"),
            "--images",
            str(images),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--out",
            str(tmp_path / "out"),
            *TINY_LABEL,
            "--model.backbone.init_args.weights",
            str(weights),
            "--cold_start",
            "auto",
            "--data.query_size",
            "5",
        ]
    )
    assert first["mode"] == "cold_start" and first["strategy"].startswith("TypiClust")  # pretrained features


def test_a_loss_that_becomes_nan_stops_the_run_before_its_epoch_is_saved(tmp_path, capsys, monkeypatch):
    simclr = Pretrainer._simclr

    def diverged(self, x0, x1):
        loss, z = simclr(self, x0, x1)
        return loss * float("nan"), z

    monkeypatch.setattr(Pretrainer, "_simclr", diverged)
    line = one_line_error(capsys, digits_args(tmp_path), code=3)
    assert "the pretraining loss became nan in epoch 0: lower model.lr" in line
    assert not (tmp_path / "digits" / "ssl").exists()  # nothing to resume from: the new folder is removed
