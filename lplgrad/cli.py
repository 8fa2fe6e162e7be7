"""``python -m lplgrad fit --config configs/<dataset>.yaml``: LightningCLI with the rounds loop."""
from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from lplgrad.callbacks import ActiveLearningLoop, QueryProgressBar, RoundFigures
from lplgrad.data import ActiveDataModule
from lplgrad.datasets import DatasetNotFoundError
from lplgrad.module import ActiveLearner


class LPLgradCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ActiveLearningLoop, "loop")
        parser.add_lightning_class_args(RoundFigures, "figures")
        parser.add_lightning_class_args(QueryProgressBar, "query_progress")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")


def cli_main(args: list[str] | None = None, run: bool = True) -> LPLgradCLI:
    """Build (and with ``run``, execute) the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests)."""
    try:
        return LPLgradCLI(
            ActiveLearner,
            ActiveDataModule,
            args=args,
            run=run,
            trainer_defaults={"max_epochs": -1, "num_sanity_val_steps": 0},
        )
    except DatasetNotFoundError as e:
        print(f"lplgrad: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
