"""TF32 settings (``--math.*``): applied before anything is built, recorded in the run's config,
and absent from an older run's config.yaml without blocking its resume."""

import torch

from lplgrad.cli import cli_main
from lplgrad.resume import differences
from helpers.tiny import tiny_fit_args


def test_math_options_set_tf32_for_the_run(tmp_path):
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        cli = cli_main(
            tiny_fit_args(tmp_path, "--math.matmul_precision", "high", "--math.cudnn_tf32", "false", subcommand=False),
            run=False,
        )
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32 is False
        assert cli.config.math.matmul_precision == "high"
        cli_main(tiny_fit_args(tmp_path, subcommand=False), run=False)  # the defaults: PyTorch's own
        assert torch.get_float32_matmul_precision() == "highest" and torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def test_a_run_saved_before_the_math_options_resumes_with_their_defaults():
    old = {"model": {"margin": 1.0}}
    assert (
        differences(old, {"model": {"margin": 1.0}, "math": {"matmul_precision": "highest", "cudnn_tf32": True}}) == {}
    )
    assert differences(old, {"model": {"margin": 1.0}, "math": {"matmul_precision": "high", "cudnn_tf32": True}}) == {
        "math.matmul_precision": ("highest", "high")
    }


def test_a_run_saved_with_the_strategy_in_the_model_resumes_under_the_new_key():
    math = {"matmul_precision": "highest", "cudnn_tf32": True}
    old = {
        "model": {
            "margin": 1.0,
            "strategy": {"class_path": "lplgrad.strategies.LPLgrad", "init_args": {"norm": "global"}},
        }
    }
    now = {
        "model": {"margin": 1.0},
        "math": math,
        "strategy": {"class_path": "lplgrad.strategies.LPLgrad", "init_args": {"norm": "global"}},
    }
    assert differences(old, now) == {}
    now["strategy"]["class_path"] = "lplgrad.strategies.Random"
    assert differences(old, now) == {"strategy.class_path": ("lplgrad.strategies.LPLgrad", "lplgrad.strategies.Random")}
