"""The backend's options: the labeling app's (``--config configs/label_folder.yaml``, backbone,
strategy, epochs, ...; :class:`~lplgrad.labeling.cli.LabelCLI`) plus the server's own, and what a
project's labeling config says (the ``Choices`` question, its image and its classes)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lplgrad.errors import LabelingError
from lplgrad.labeling.cli import EpochLines, LabelCLI
from lplgrad.labeling.data import LabelFolderData
from lplgrad.module import ActiveLearner
from lplgrad.runfolder import RunFolder

PLACEHOLDER_IMAGES = "<state_dir>/images"  # --images is the backend's own image cache, set per training


class ServeCLI(LabelCLI):
    """The labeling app's parser with the server's options added."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        add_server_options(parser)


def add_server_options(parser) -> None:
    """Where the backend listens, keeps its state, and when it trains."""
    parser.add_argument("--state_dir", type=str, default="lplgrad_serve", help="The model, state and image cache.")
    parser.add_argument("--host", type=str, default="127.0.0.1", help="The address to listen on.")
    parser.add_argument("--port", type=int, default=9090, help="The port to listen on.")
    parser.add_argument(
        "--train_every",
        type=int,
        default=10,
        help="Train after this many new, changed or deleted annotations (0: only on START_TRAINING).",
    )
    parser.add_argument("--basic_auth_user", type=str | None, default=None, help="Require HTTP basic auth.")
    parser.add_argument(
        "--basic_auth_pass_env",
        type=str,
        default="LPLGRAD_SERVE_PASSWORD",
        help="The environment variable holding the basic-auth password.",
    )
    parser.add_argument("--retry_max", type=float, default=300.0, help="Longest wait between retries (seconds).")
    parser.add_argument(
        "--old_predictions",
        type=Literal["delete", "keep"],
        default="delete",
        help="After a training, delete this backend's older predictions of the tasks it re-scores (delete), "
        "or keep every version's (keep).",
    )


TRAINER_DEFAULTS = {
    "max_epochs": 40,
    "num_sanity_val_steps": 0,
    "logger": False,
    "enable_checkpointing": False,
}


def make_cli(args: list[str]) -> ServeCLI:
    """Parse ``args`` (nothing is built: :meth:`LabelCLI.build` does that)."""
    return ServeCLI(
        ActiveLearner,
        LabelFolderData,
        args=args,
        run=False,
        run_folder=RunFolder("choose another --state_dir"),
        save_config_callback=None,
        trainer_defaults={**TRAINER_DEFAULTS, "callbacks": [EpochLines()]},
        parser_kwargs={"prog": "python -m lplgrad.serve", "exit_on_error": False},
    )


def training_args(args: list[str], state_dir: Path, classes: list[str]) -> list[str]:
    """The command line of one training: the user's, with the image cache, the labels and the
    classes of the project put last (so that they win)."""
    return [
        *args,
        "--images",
        str(state_dir / "images"),
        "--labels",
        str(state_dir / "labels.csv"),
        "--out",
        str(state_dir / "run"),
        "--classes",
        json.dumps(classes),
    ]


@dataclass(frozen=True)
class LabelConfig:
    """A project's single-choice question: its ``from_name``, the image it labels (``to_name``),
    the task data key of that image, and the classes in the config's order."""

    from_name: str
    to_name: str
    value_key: str
    classes: list[str]


def parse_label_config(xml: str) -> LabelConfig:
    """The first ``<Choices>`` of a labeling config and the ``<Image>`` it points at."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise LabelingError(f"the project's labeling config is not XML: {e}") from None
    choices = next((el for el in root.iter() if el.tag == "Choices"), None)
    if choices is None or not choices.get("name") or not choices.get("toName"):
        raise LabelingError("the project's labeling config has no <Choices name=... toName=...>: nothing to predict")
    to_name = choices.get("toName")
    image = next((el for el in root.iter() if el.tag == "Image" and el.get("name") == to_name), None)
    if image is None or not (image.get("value") or "").startswith("$"):
        raise LabelingError(f"the project's labeling config has no <Image name={to_name!r} value='$...'>")
    classes = [c.get("value") for c in choices.iter() if c.tag == "Choice" and c.get("value")]
    if len(classes) < 2:
        raise LabelingError(f"the project's <Choices> names {len(classes)} class: a classifier needs at least 2")
    return LabelConfig(choices.get("name"), to_name, image.get("value")[1:], classes)


def choice_result(config: LabelConfig, label: str) -> list[dict[str, Any]]:
    """A prediction's ``result``: one ``choices`` region with ``label``."""
    return [
        {"from_name": config.from_name, "to_name": config.to_name, "type": "choices", "value": {"choices": [label]}}
    ]
