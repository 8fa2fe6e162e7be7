"""The pretraining LightningModule: the active-learning run's backbone, a projection head on its
classifier's input, and SimCLR's or BYOL's loss.

- SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
  Representations", §2.1): both views through the backbone and a projection head, NT-Xent over
  the batch's 2B-2 negatives (lightly's ``NTXentLoss``, temperature 0.5 as lightly's CIFAR-10
  benchmark; ``SimCLRProjectionHead``).
- BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", §3.1): an online backbone, projection
  and predictor regress a momentum (EMA) copy's projection of the other view (lightly's
  ``BYOLProjectionHead``, ``BYOLPredictionHead``, ``NegativeCosineSimilarity``,
  ``update_momentum``, ``cosine_schedule``); the EMA rate rises from ``ema_momentum`` to 1 along
  a cosine over the run's steps (BYOL §3.2).

The head reads what the active-learning classifier reads: the input of the backbone's ``head``
(the pooled penultimate features; taken with a forward pre-hook, as
``lplgrad.strategies.embedding.probabilities_and_penultimate`` does). The classifier itself is
frozen and never trained here: an active-learning run replaces it. The backbone is ``self.net``,
so ``checkpoints/last.ckpt`` is itself a weights file for lplgrad's ResNets (their ``weights``
take the ``net.`` tensors of a checkpoint), as ``backbone.pt`` is.

Optimiser (lightly's CIFAR-10 benchmark, docs/source/getting_started/benchmarks/
cifar10_benchmark.py): SGD, lr 0.06 x batch size / 128, momentum 0.9, weight decay 5e-4, and a
cosine decay over ``trainer.max_epochs`` (stepped every epoch).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.nn import functional as F

from lplgrad.callbacks.process_state import every_rank, rng_state, set_rng_state, this_rank
from lplgrad.nets.classifier_input import classifier_inputs
from lplgrad.errors import ConfigError, TrainingDivergedError
from lplgrad.nets.library import TorchvisionNet
from lplgrad.nets.resnet import ResNet18


def classifier_input(net: nn.Module, x: Tensor) -> Tensor:
    """The input of ``net.head`` during a forward pass of ``x``, flattened: (B, D)."""
    with classifier_inputs(net) as seen:
        net(x)
    return seen[-1].flatten(1)


def spread(z: Tensor) -> Tensor:
    """How far the outputs ``z`` (B, d) are from collapsing to one point: sqrt(d) times the mean
    over dimensions of the standard deviation over the batch of the l2-normalised outputs
    (Chen & He 2021, "Exploring Simple Siamese Representation Learning", §4.1, where it is
    1/sqrt(d) for isotropic Gaussian outputs): about 1 when well spread, 0 when collapsed."""
    z = F.normalize(z.detach().float(), dim=1)
    return z.std(0).mean() * math.sqrt(z.shape[1])


class Pretrainer(LightningModule):
    """SimCLR or BYOL on a backbone built as the active-learning config builds it.

    Args:
        backbone: builds the network from (num_classes, in_channels), as the active-learning
            config's ``model.backbone`` (class_path and init_args, e.g. lplgrad.nets.ResNet18 with
            ``width``); it must have a ``head`` (its final nn.Linear).
        num_classes, in_channels: linked from the data (the head's size does not matter: it is
            not trained).
        method: ``simclr`` or ``byol``.
        temperature: NT-Xent's temperature (SimCLR).
        hidden_dim, output_dim: the projection head's hidden and output widths (None: lightly's
            CIFAR-10 benchmark sizes for a 512-wide backbone, scaled to the backbone's width D:
            SimCLR D and 128, BYOL 2D and 256; BYOL's predictor uses the same widths).
        lr: SGD's learning rate (None: 0.06 x batch_size / 128).
        batch_size: linked from ``data.batch_size`` (for the default lr).
        momentum, weight_decay: SGD's.
        ema_momentum: BYOL's first EMA rate of the momentum copy (then up to 1 along a cosine).
    """

    def __init__(
        self,
        backbone: Callable[[int, int], nn.Module] = ResNet18,
        num_classes: int = 2,
        in_channels: int = 3,
        method: Literal["simclr", "byol"] = "simclr",
        temperature: float = 0.5,
        hidden_dim: int | None = None,
        output_dim: int | None = None,
        lr: float | None = None,
        batch_size: int = 256,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        ema_momentum: float = 0.99,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone"])
        check_settings(temperature, lr, ema_momentum)
        self.net = backbone(num_classes, in_channels)
        if isinstance(self.net, TorchvisionNet) and in_channels == 1:  # its stem is made 1-channel after loading
            raise ConfigError(
                "a one-channel torchvision backbone could not load its pretrained weights back (TorchvisionNet "
                "loads a file before it adapts the stem): pretrain it on RGB images, or use lplgrad.nets.ResNet18"
            )
        head = getattr(self.net, "head", None)
        if not isinstance(head, nn.Linear):
            raise ConfigError(f"{type(self.net).__name__} has no head (a final nn.Linear) whose input to pretrain")
        head.requires_grad_(False)  # the classifier is not pretrained: an active-learning run replaces it
        self.method = method
        self.projection, self.prediction, self.criterion = self._heads(head.in_features, hidden_dim, output_dim)
        if method == "byol":  # the momentum copy: EMA of the online weights, never trained by gradients
            self.target_net, self.target_projection = copy.deepcopy(self.net), copy.deepcopy(self.projection)
            for p in (*self.target_net.parameters(), *self.target_projection.parameters()):
                p.requires_grad_(False)
        self.sgd_lr = lr if lr is not None else 0.06 * batch_size / 128
        self._loss_sum: Tensor | None = None  # this epoch's summed loss, checked once at its end

    def _heads(self, dim: int, hidden: int | None, out: int | None) -> tuple[nn.Module, nn.Module | None, nn.Module]:
        """(projection head, BYOL's predictor or None, loss), from lightly."""
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead

        if self.method == "simclr":  # negatives from every process under DDP (none to gather otherwise)
            head = SimCLRProjectionHead(dim, hidden or dim, out or 128)
            return head, None, NTXentLoss(self.hparams.temperature, gather_distributed=True)
        hidden, out = hidden or 2 * dim, out or 256
        return BYOLProjectionHead(dim, hidden, out), BYOLPredictionHead(out, hidden, out), NegativeCosineSimilarity()

    def forward(self, x: Tensor) -> Tensor:
        """The backbone's classifier input for ``x``: the features an active-learning run starts from."""
        return classifier_input(self.net, x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x0, x1 = batch
        loss, z = self._simclr(x0, x1) if self.method == "simclr" else self._byol(x0, x1)
        self._loss_sum = loss.detach() if self._loss_sum is None else self._loss_sum + loss.detach()
        self.log("pretrain/loss", loss, on_step=True, on_epoch=True, batch_size=len(x0), sync_dist=True)
        self.log("pretrain/spread", spread(z), on_step=False, on_epoch=True, batch_size=len(x0), sync_dist=True)
        return loss

    def _simclr(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        z0, z1 = self.projection(self(x0)), self.projection(self(x1))
        return self.criterion(z0, z1), z0

    def _byol(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(
            self.global_step, max(1, int(self.trainer.estimated_stepping_batches)), self.hparams.ema_momentum, 1.0
        )
        update_momentum(self.net, self.target_net, m)
        update_momentum(self.projection, self.target_projection, m)
        z0, z1 = self.projection(self(x0)), self.projection(self(x1))
        with torch.no_grad():
            t0 = self.target_projection(classifier_input(self.target_net, x0))
            t1 = self.target_projection(classifier_input(self.target_net, x1))
        loss = 0.5 * (self.criterion(self.prediction(z0), t1) + self.criterion(self.prediction(z1), t0))
        self.log("pretrain/ema_momentum", m, on_step=False, on_epoch=True, batch_size=len(x0))
        return loss, z0

    def on_train_epoch_start(self) -> None:
        self._loss_sum = None
        self.log("pretrain/lr", self.optimizers().param_groups[0]["lr"], on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        """A loss that became NaN or infinite stops the run before this epoch is saved (the
        checkpoint callback runs after this hook): the last checkpoint is the last good epoch."""
        if self._loss_sum is not None and not bool(torch.isfinite(self._loss_sum)):
            raise TrainingDivergedError(
                f"the pretraining loss became {float(self._loss_sum)} in epoch {self.current_epoch}: lower model.lr "
                "(or raise model.temperature); checkpoints/last.ckpt holds the last good epoch"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Saved at an epoch's end with the random state the next epoch starts from (every
        process's), so that a resumed run shuffles and draws its views as an uninterrupted one."""
        checkpoint["rng_ranks"] = every_rank(rng_state())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        mine = this_rank(checkpoint["rng_ranks"]) if "rng_ranks" in checkpoint else None
        if mine is not None:  # checkpoints of before 2026-12-03 carry none: the resume is not exact
            set_rng_state(mine)

    def configure_optimizers(self) -> dict:
        epochs = self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ConfigError(f"trainer.max_epochs must be set (the cosine schedule spans it), got {epochs}")
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.SGD(
            params, lr=self.sgd_lr, momentum=self.hparams.momentum, weight_decay=self.hparams.weight_decay
        )
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}


def check_settings(temperature: float, lr: float | None, ema_momentum: float) -> None:
    if temperature <= 0:
        raise ConfigError(f"model.temperature must be positive, got {temperature}")
    if lr is not None and lr <= 0:
        raise ConfigError(f"model.lr must be positive (or null: 0.06 x batch size / 128), got {lr}")
    if not 0.0 <= ema_momentum <= 1.0:
        raise ConfigError(f"model.ema_momentum must be in [0, 1], got {ema_momentum}")
