"""The tiny experiment the tests run: scikit-learn's digits, a ResNet-18 of width 4, a few rounds."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.yaml")
#: two DDP processes on the CPU
DDP_TWO_CPU = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


def tiny_options(
    initial: int = 20, query: int = 15, subset: int = 60, budget: int = 50, epochs: int = 1, width: int = 4
) -> list[str]:
    """The sizes of a tiny experiment on the digits config, as command-line options."""
    return [
        "--model.backbone.init_args.width",
        str(width),
        "--data.initial_size",
        str(initial),
        "--data.query_size",
        str(query),
        "--data.subset_size",
        str(subset),
        "--data.budget",
        str(budget),
        "--loop.epochs_per_round",
        str(epochs),
    ]


def tiny_fit_args(save_dir: Path, *extra: str, subcommand: bool = True, **sizes: int) -> list[str]:
    """``fit`` on the digits with :func:`tiny_options` (``sizes`` override them), no progress bar
    or model summary, logs under ``save_dir``; ``extra`` options come last, so they override.
    Without ``subcommand`` the arguments suit ``cli_main(..., run=False)``."""
    return [
        *(["fit"] if subcommand else []),
        "--config",
        DIGITS,
        "--trainer.logger.init_args.save_dir",
        str(save_dir),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *tiny_options(**sizes),
        *extra,
    ]
