"""torchvision and timm classifiers, by name, as lplgrad's main model M.

Each returns what the method needs, ``(logits, [stage outputs])``: the outputs of four stage
modules, recorded by forward hooks while the library's own forward runs, so that the loss-
prediction model A reads multi-level features as it does from lplgrad's ResNet. A is sized from
``feature_channels``, measured once at construction on an input of ``image_size``. The classifier
is replaced to output ``num_classes``; one-channel data gets a one-channel stem.

Weights (``weights``): None (random), the library's own name for them (torchvision: "DEFAULT",
"IMAGENET1K_V1", ...; timm: "pretrained"), downloaded where the machine is online or found in the
library's cache; or a local file. Offline and without the file, the run stops with one line
saying which file to fetch and where to put it. ``trainable_stages`` trains only the last stages
and the head (:func:`lplgrad.nets.weights.freeze_before`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from lplgrad.errors import ConfigError
from lplgrad.nets import weights as W

#: torchvision model-name prefix -> the four stage modules whose outputs A reads
TORCHVISION_STAGES = {
    "resnet": ["layer1", "layer2", "layer3", "layer4"],
    "resnext": ["layer1", "layer2", "layer3", "layer4"],
    "wide_resnet": ["layer1", "layer2", "layer3", "layer4"],
    "convnext": ["features.1", "features.3", "features.5", "features.7"],
    "efficientnet": ["features.2", "features.3", "features.5", "features.7"],
    "mobilenet_v3_small": ["features.1", "features.3", "features.8", "features.12"],
    "mobilenet_v3_large": ["features.3", "features.6", "features.12", "features.16"],
    "mobilenet_v2": ["features.3", "features.6", "features.13", "features.18"],
    "regnet": ["trunk_output.block1", "trunk_output.block2", "trunk_output.block3", "trunk_output.block4"],
    "densenet": ["features.denseblock1", "features.denseblock2", "features.denseblock3", "features.denseblock4"],
}


class LibraryNet(nn.Module):
    """A library classifier whose stage outputs are recorded on the way: ``forward`` returns
    ``(logits, [stage outputs])``. ``head`` is its (resized) classifier."""

    def __init__(
        self,
        model: nn.Module,
        stages: list[str],
        head_name: str,
        in_channels: int,
        image_size: int,
        trainable_stages: int | None,
        pretrained: bool,
    ) -> None:
        super().__init__()
        self.model, self.stages, self.head_name = model, list(stages), head_name
        self.pretrained = pretrained  # its features mean something before any label
        for name in self.stages:
            try:
                model.get_submodule(name)
            except AttributeError:
                raise ConfigError(
                    f"{type(model).__name__} has no module {name!r} to read stage features from "
                    "(model.backbone.init_args.stages)"
                ) from None
        W.freeze_before(model, self.stages, trainable_stages)
        with torch.no_grad():
            was = model.training
            _, feats = self.eval()(torch.zeros(1, in_channels, image_size, image_size))
            self.train(was)
        self.feature_channels = [f.shape[1] if f.dim() == 4 else f.shape[-1] for f in feats]

    @property
    def head(self) -> nn.Linear:
        """The classifier (the last linear layer)."""
        return self.model.get_submodule(self.head_name)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The stage modules, by name in this module (its forward pass looks them up by name)."""
        return tuple(f"model.{n}" for n in self.stages)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        outputs: list[Tensor] = []  # hooks held for this call only: copies of the module stay independent
        handles = [
            self.model.get_submodule(n).register_forward_hook(lambda m, i, o: outputs.append(o)) for n in self.stages
        ]
        try:
            logits = self.model(x)
        finally:
            for h in handles:
                h.remove()
        return logits, outputs

    def train(self, mode: bool = True) -> LibraryNet:
        super().train(mode)
        W.frozen_batchnorms_to_eval(self)
        return self


def _stages_for(name: str, stages: list[str] | None) -> list[str]:
    if stages:
        return list(stages)
    for prefix, found in TORCHVISION_STAGES.items():
        if name.startswith(prefix):
            return found
    raise ConfigError(
        f"no default stages for torchvision's {name}: set model.backbone.init_args.stages to the "
        "names of the modules whose outputs the loss-prediction model reads (e.g. four blocks)"
    )


def _torchvision_weights(name: str, weights: str):
    """torchvision's weights enum entry, or a one-line error naming the file to fetch."""
    from torchvision.models import get_model_weights

    try:
        entry = get_model_weights(name)[weights]
    except KeyError:
        raise ConfigError(
            f"torchvision's {name} has no weights named {weights!r} and no file {weights} exists"
        ) from None
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
    return entry, target


class TorchvisionNet(LibraryNet):
    """A torchvision classification model by name (``torchvision.models.get_model``).

    Args:
        name: e.g. "resnet18", "resnet50", "convnext_tiny", "efficientnet_b0", "mobilenet_v3_small".
        num_classes, in_channels: linked from the data module.
        weights: None, a torchvision weights name ("DEFAULT", "IMAGENET1K_V1", ...), or a file.
        image_size: the input size the network is measured at (its stage widths do not depend on it).
        trainable_stages: train the last k stages and the head only (None: everything).
        stages: the four stage modules A reads (default: per model family).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        name: str = "resnet18",
        weights: str | None = None,
        image_size: int = 224,
        trainable_stages: int | None = None,
        stages: list[str] | None = None,
    ) -> None:
        from torchvision.models import get_model

        stage_names = _stages_for(name, stages)
        if weights is None:
            model = get_model(name, weights=None)
        elif Path(weights).is_file():
            state = W.read_state_dict(weights)
            model = get_model(name, weights=None)
            W.load_except(model, state, [W.last_linear(model)[0] + "."], weights)
        else:
            entry, target = _torchvision_weights(name, weights)
            try:
                model = get_model(name, weights=entry)
            except Exception as e:  # noqa: BLE001 - offline: say which file to fetch
                raise W.WeightsNotFoundError(
                    f"torchvision weights {name} {entry.name} are not in {target.parent} and could not be downloaded "
                    f"({str(e).splitlines()[0][:120]}): fetch {entry.url} and put it at {target}, or set "
                    "model.backbone.init_args.weights to a weights file"
                ) from None
        head_name, old = W.last_linear(model)
        W.replace_module(model, head_name, nn.Linear(old.in_features, num_classes))
        if in_channels == 1:
            W.one_channel_stem(model)
        elif in_channels != 3:
            raise ConfigError(f"torchvision backbones take 1 or 3 input channels, not {in_channels}")
        super().__init__(model, stage_names, head_name, in_channels, image_size, trainable_stages, weights is not None)


class TimmNet(LibraryNet):
    """A timm model by name (``timm.create_model``); timm is the ``timm`` extra.

    Args:
        name: e.g. "resnet50", "convnext_tiny", "vit_tiny_patch16_224".
        num_classes, in_channels: linked from the data module (timm adapts the stem to 1 channel).
        weights: None, "pretrained" (timm's download or cache), or a file.
        image_size: input size; passed to models whose size is built in (ViT: ``img_size``).
        trainable_stages: train the last k stages and the head only (None: everything).
        stages: modules A reads (default: the last four entries of timm's ``feature_info``).
        model_args: further ``timm.create_model`` arguments (e.g. ``{"patch_size": 8}``).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        name: str = "resnet18",
        weights: str | None = None,
        image_size: int = 224,
        trainable_stages: int | None = None,
        stages: list[str] | None = None,
        model_args: dict | None = None,
    ) -> None:
        try:
            import timm
        except ImportError:
            raise ConfigError("TimmNet needs timm: pip install 'lplgrad[timm]' (or pip install timm)") from None
        kw = dict(model_args or {})
        if "vit" in name or "deit" in name:
            kw.setdefault("img_size", image_size)
        if weights is not None and Path(weights).is_file():
            kw.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
        elif weights == "pretrained":
            kw["pretrained"] = True
        elif weights is not None:
            raise ConfigError(f"weights {weights!r}: neither a file nor 'pretrained'")
        try:
            model = timm.create_model(name, num_classes=num_classes, in_chans=in_channels, **kw)
        except Exception as e:  # noqa: BLE001
            if weights != "pretrained":
                raise ConfigError(f"timm could not build {name}: {str(e).splitlines()[0]}") from None
            hub = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None) or f"timm/{name}"
            raise W.WeightsNotFoundError(
                f"timm weights for {name} are not cached and could not be downloaded ({str(e).splitlines()[0][:120]}): "
                f"fetch model.safetensors from https://huggingface.co/{hub} and set model.backbone.init_args.weights "
                "to that file"
            ) from None
        stage_names = list(stages) if stages else [f["module"] for f in model.feature_info][-4:]
        head_name = next(n for n, m in model.named_modules() if m is model.get_classifier())
        super().__init__(model, stage_names, head_name, in_channels, image_size, trainable_stages, weights is not None)
