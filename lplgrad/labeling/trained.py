"""The network of a labeling round, rebuilt for use after labeling (``python -m lplgrad.predict``,
``python -m lplgrad.export``).

A round folder holds ``model.ckpt`` (:mod:`~lplgrad.labeling.checkpoint`: the weights of M and A,
the class names, whether the network was trained) and ``config.yaml``, the run's resolved
configuration. M is rebuilt from that configuration exactly as the labeling app built it (the
backbone's class and options, the model's options, the number of classes and input channels),
its weights loaded, and images are turned into its input as the labeling app does to evaluate
and score them: decoded by :func:`~lplgrad.labeling.scan.open_image`, resized, scaled to [0, 1]
and normalised (:func:`lplgrad.transforms.eval_transform`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms as T

from lplgrad.errors import ModelFileError
from lplgrad.labeling.checkpoint import CHECKPOINT, latest_checkpoint
from lplgrad.labeling.scan import MAX_PIXELS, open_image
from lplgrad.module import ActiveLearner
from lplgrad.transforms import eval_transform

CONFIG = "config.yaml"


def add_run_argument(parser) -> None:
    """``--run``: which labelling round's network (``predict`` and ``export`` take it alike)."""
    parser.add_argument(
        "--run",
        type=str,
        required=True,
        help="The --out folder of python -m lplgrad.label (its latest round with a model.ckpt), a round_NNN "
        "folder, or a model.ckpt (its round's config.yaml must be beside it).",
    )


@dataclass(frozen=True)
class InputSpec:
    """What M takes: ``image_size`` x ``image_size`` images of ``channels`` channels (1: grayscale,
    3: RGB), scaled to [0, 1], then normalised with ``mean`` and ``std`` per channel. Images of
    more than ``max_pixels`` pixels are not decoded (the labeling app's limit)."""

    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_pixels: int | None = MAX_PIXELS

    @property
    def mode(self) -> str:
        """The PIL mode images are converted to."""
        return "L" if self.channels == 1 else "RGB"

    @cached_property
    def transform(self) -> T.Compose:
        """The labeling app's evaluation transform: resize, to [0, 1], normalise."""
        return eval_transform(self.image_size, self.mean, self.std, resize=True)

    @cached_property
    def unit_transform(self) -> T.Compose:
        """The same without the normalisation: the [0, 1] input of the exported models."""
        *steps, normalise = self.transform.transforms
        assert isinstance(normalise, T.Normalize), "eval_transform is expected to end with its normalisation"
        return T.Compose(steps)

    def decode(self, path: str | Path) -> Image.Image:
        return open_image(path, self.mode, self.image_size, self.max_pixels)

    def load(self, path: str | Path) -> Tensor:
        """The normalised (C, H, W) input of M for the image at ``path``."""
        return self.transform(self.decode(path))

    def load_unit(self, path: str | Path) -> Tensor:
        """The (C, H, W) image in [0, 1], resized but not normalised."""
        return self.unit_transform(self.decode(path))


def input_spec(data: dict[str, Any]) -> InputSpec:
    """The input of the round's network from the ``data`` section of its ``config.yaml``, with
    :class:`~lplgrad.labeling.data.LabelFolderData`'s defaults (32 pixels, RGB, mean and std 0.5)."""
    channels = 1 if data.get("grayscale") else 3
    mean, std = data.get("mean"), data.get("std")
    return InputSpec(
        image_size=int(data.get("image_size") or 32),
        channels=channels,
        mean=tuple(float(v) for v in mean) if mean else (0.5,) * channels,
        std=tuple(float(v) for v in std) if std else (0.5,) * channels,
        max_pixels=data.get("max_pixels", MAX_PIXELS),
    )


@dataclass
class TrainedModel:
    """M of a labeling round in eval mode on the CPU, its classes (output order) and its input."""

    net: nn.Module
    classes: list[str]
    spec: InputSpec
    checkpoint: Path
    round: int
    backbone: str  # the backbone's class path
    images: Path | None  # the labeling run's image folder, as its command line gave it

    def describe(self) -> str:
        """One line: where the network comes from and what it takes."""
        s = self.spec
        return (
            f"{self.checkpoint} (round {self.round}, {self.backbone}, {len(self.classes)} classes: "
            f"{', '.join(self.classes)}; input {s.image_size}x{s.image_size} {s.mode})"
        )


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself (a ``model.ckpt``), a round folder's checkpoint, or the latest round's
    checkpoint of a labeling run's output folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ModelFileError(f"--run {path}: no such file or folder")
    if (path / CHECKPOINT).is_file():
        return path / CHECKPOINT
    found = latest_checkpoint(path)
    if found is None:
        raise ModelFileError(
            f"--run {path}: no round_NNN/{CHECKPOINT} there: give the --out folder of python -m lplgrad.label, "
            "one of its round folders, or a model.ckpt"
        )
    return found


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's dict; refused when it is not one of the labeling app's or holds an
    untrained network (a cold start)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means: not a usable checkpoint
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelFileError(f"{path} is not a checkpoint written by python -m lplgrad.label: {first}") from None
    if not isinstance(state, dict) or not {"state_dict", "classes"} <= state.keys():
        raise ModelFileError(
            f"{path} is not a checkpoint written by python -m lplgrad.label: no state_dict and classes"
        )
    if not state.get("trained", True):
        raise ModelFileError(
            f"{path} holds an untrained network: round {state.get('round')} was a cold start (too few labels to "
            "train); label its proposals and run python -m lplgrad.label again, then use that round"
        )
    return state


def read_config(ckpt: Path) -> dict[str, Any]:
    """The round's ``config.yaml`` (next to the checkpoint), with its ``model`` and ``data`` sections."""
    path = ckpt.parent / CONFIG
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ModelFileError(
            f"{path} cannot be read ({type(e).__name__}): the network cannot be rebuilt without its round's config"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ModelFileError(f"{path} has no model section: it is not the config of a python -m lplgrad.label round")
    return config


def rebuild(model: dict[str, Any], num_classes: int, in_channels: int) -> ActiveLearner:
    """M and A as the config's ``model`` section builds them (the labeling app's own parser),
    with what only training needs switched off: pretrained weights are not loaded (the
    checkpoint holds every weight), no compilation, no channels-last copy, no initial-weights copy,
    no feature cache (the network takes images; its state_dict is the same either way)."""
    model = {**model, "num_classes": num_classes, "in_channels": in_channels}
    for key in ("compile", "channels_last", "retrain_from_scratch", "feature_cache"):  # those the config names
        if key in model:
            model[key] = False
    backbone = model.get("backbone")
    if isinstance(backbone, dict) and isinstance(backbone.get("init_args"), dict):
        if backbone["init_args"].get("weights") is not None:
            model["backbone"] = {**backbone, "init_args": {**backbone["init_args"], "weights": None}}
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(ActiveLearner, "model", subclass_mode=False)
    try:
        cfg = parser.parse_object({"model": model})
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        return instantiate(cfg).model
    except Exception as e:  # noqa: BLE001 - a config this version cannot build: one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelFileError(f"the round's model section does not build here: {first}") from None


def load_trained(path: str | Path) -> TrainedModel:
    """The round's M, rebuilt and loaded, in eval mode on the CPU (:func:`find_checkpoint` for ``path``)."""
    ckpt = find_checkpoint(path)
    state = read_checkpoint(ckpt)
    config = read_config(ckpt)
    spec = input_spec(config.get("data") or {})
    classes = list(state["classes"])
    learner = rebuild(config["model"], max(2, len(classes)), spec.channels)  # LabelFolderData.num_classes
    try:
        learner.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelFileError(f"{ckpt} does not fit the model its {CONFIG} describes: {first}") from None
    backbone = config["model"].get("backbone")
    name = backbone.get("class_path", "?") if isinstance(backbone, dict) else str(backbone)
    images = Path(config["images"]) if config.get("images") else None
    return TrainedModel(learner.net.eval(), classes, spec, ckpt, int(state.get("round", 0)), name, images)


def probabilities(net: nn.Module, x: Tensor, n_classes: int) -> Tensor:
    """Softmax probabilities of the named classes, (B, n_classes): M's outputs beyond the class
    list (a network needs 2 outputs before 2 classes are known) are left out, so a row sums to 1
    or less. As the labeling app computes its guesses (:func:`~lplgrad.labeling.propose.predict`)."""
    return torch.softmax(net(x)[0].float(), 1)[:, :n_classes]
