"""Both command lines: every expected failure is one ``<prog>: error:`` line with its exit code
(docs/errors.md), and LightningCLI's own optimiser options are refused with where to go instead."""

from pathlib import Path

import pytest

from lplgrad.cli import cli_main as fit_main
from lplgrad.errors import ConfigError, DataError, LabelingError, LPLgradError, RunExistsError, TrainingDivergedError
from lplgrad.label import cli_main as label_main
from helpers.shapes import TINY_LABEL, make_shapes, write_labels
from helpers.tiny import tiny_fit_args

ROOT = Path(__file__).resolve().parents[1]


def one_line(main, args, capsys, prog: str, code: int = 2) -> str:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def label_args(tmp_path: Path, *extra: str) -> list[str]:
    images = tmp_path / "shapes"
    if not images.exists():
        truth = make_shapes(images, n=12)
        write_labels(tmp_path / "labels.csv", sorted(truth.items())[:8])
    return [
        "--config",
        str(ROOT / "configs" / "label_folder.yaml"),
        "--images",
        str(images),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--out",
        str(tmp_path / "out"),
        *TINY_LABEL,
        "--data.min_labels",
        "4",
        *extra,
    ]


def test_every_error_is_in_one_tree():
    for cls in (ConfigError, DataError, RunExistsError, LabelingError, TrainingDivergedError):
        assert issubclass(cls, LPLgradError)
    assert TrainingDivergedError.exit_code == 3
    assert {c.exit_code for c in (ConfigError, DataError, RunExistsError, LabelingError)} == {2}


@pytest.mark.parametrize(
    "trap,where",
    [
        (["--optimizer", "Adam"], "--model.optimizer"),
        (["--optimizer=torch.optim.Adam"], "--model.optimizer"),
        (["--optimizer.lr", "0.1"], "--model.optimizer"),
        (["--lr_scheduler", "StepLR"], "--model.scheduler"),
        (["--lr_scheduler.class_path", "torch.optim.lr_scheduler.StepLR"], "--model.scheduler"),
    ],
)
def test_fit_refuses_lightning_optimizer_options(tmp_path, capsys, trap, where):
    line = one_line(fit_main, tiny_fit_args(tmp_path, *trap), capsys, "lplgrad")
    assert "is not used by lplgrad" in line and where in line
    assert not (tmp_path / "digits").exists()  # nothing was built


def test_fit_refuses_them_in_a_config_file(tmp_path, capsys):
    cfg = tmp_path / "opt.yaml"
    cfg.write_text("lr_scheduler:\n  class_path: torch.optim.lr_scheduler.StepLR\n  init_args:\n    step_size: 3\n")
    line = one_line(fit_main, tiny_fit_args(tmp_path, "--config", str(cfg)), capsys, "lplgrad")
    assert "--lr_scheduler is not used" in line and "--model.scheduler" in line


def test_fit_unknown_option_is_one_line(tmp_path, capsys):
    assert "see --help" in one_line(fit_main, tiny_fit_args(tmp_path, "--data.nonsense", "1"), capsys, "lplgrad")


@pytest.mark.parametrize(
    "trap,where", [(["--optimizer", "Adam"], "--model.optimizer"), (["--lr_scheduler", "StepLR"], "--model.scheduler")]
)
def test_label_refuses_lightning_optimizer_options(tmp_path, capsys, trap, where):
    line = one_line(label_main, label_args(tmp_path, *trap), capsys, "lplgrad.label")
    assert where in line
    assert not (tmp_path / "out").exists()


def test_label_config_error_from_the_model_is_one_line(tmp_path, capsys):
    args = label_args(tmp_path, "--strategy", "lplgrad.strategies.LearningLoss", "--model.use_aux", "false")
    assert "set model.use_aux true" in one_line(label_main, args, capsys, "lplgrad.label")


def test_label_unknown_option_is_one_line(tmp_path, capsys):
    line = one_line(label_main, label_args(tmp_path, "--data.nonsense", "1"), capsys, "lplgrad.label")
    assert "see --help" in line


def test_label_diverged_loss_exits_3(tmp_path, capsys):
    args = label_args(
        tmp_path,
        "--model.backbone",
        "helpers.nan_net.NaNAfter",
        "--model.backbone.init_args.after",
        "0",
        "--model.backbone.init_args.width",
        "2",
    )
    assert "the training loss became nan" in one_line(label_main, args, capsys, "lplgrad.label", code=3)
