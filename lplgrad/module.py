"""The LightningModule: main model M trained jointly with the loss-prediction model A (docs/method.md §2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F

from lplgrad.errors import ConfigError, TrainingDivergedError
from lplgrad.losses import loss_prediction_loss
from lplgrad.nets import LossPredictionHead, ResNet18
from lplgrad.nets.dropout import attach_head_dropout


def sgd(params: Iterable) -> torch.optim.Optimizer:
    """The paper's optimiser: SGD, lr 0.1, momentum 0.9, weight decay 5e-4."""
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)


def multistep(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The paper's CIFAR schedule: lr x0.1 at epoch 160 of each round."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[160], gamma=0.1)


def initial_weights(learner: nn.Module) -> dict[str, dict[str, Tensor]]:
    """A CPU copy of M's and A's state (weights and BatchNorm statistics), by attribute name."""
    parts = {"net": learner.net, "loss_head": learner.loss_head}
    return {
        name: {k: v.detach().cpu().clone() for k, v in part.state_dict().items()}
        for name, part in parts.items()
        if part is not None
    }


def _as_list(x) -> list:
    return x if isinstance(x, list) else [x]


class ActiveLearner(LightningModule):
    """M (``backbone``) and, with ``use_aux``, A (:class:`LossPredictionHead`), trained jointly.

    Loss: mean cross-entropy + ``aux_weight`` * the pairwise margin ranking loss of A's predicted
    losses against the detached true losses; after ``epoch_loss`` epochs of a round the features
    fed to A are detached. M and A each get an optimiser and a schedule from ``optimizer`` and
    ``scheduler``, created anew every round (the rounds callback calls ``setup_optimizers``); as
    in the authors' code only M's schedule is stepped unless ``schedule_aux``.

    Args:
        backbone: builds M from (num_classes, in_channels); returns (logits, stage features).
        num_classes, in_channels: linked from the data module.
        use_aux: train A jointly (LPLgrad, LearningLoss); false trains M alone (the ablation).
        margin, aux_weight: the ranking loss's margin and its weight lambda.
        epoch_loss: epoch of the round after which A's input features are detached.
        aux_hidden: width of A's per-stage blocks.
        channels_last: keep M's convolutions in NHWC memory format (a GPU speed setting).
        compile: ``torch.compile`` M for training steps: true, or a dict of its arguments (``mode``,
            ``backend``, ...). The query and evaluation run M uncompiled: the query's per-layer
            hooks need the eager modules, and each round compiles nothing new.
        head_dropout: the rate of a dropout layer put before M's classifier (0: none, the
            default), for the strategies that sample M with dropout (BALD, BatchBALD).
        retrain_from_scratch: start M and A again from their initial weights (the pretrained
            ones, where the backbone loads some) every round, instead of continuing them.
    """

    def __init__(
        self,
        backbone: Callable[[int, int], nn.Module] = ResNet18,
        num_classes: int = 10,
        in_channels: int = 3,
        use_aux: bool = True,
        margin: float = 1.0,
        aux_weight: float = 1.0,
        epoch_loss: int = 120,
        aux_hidden: int = 128,
        schedule_aux: bool = False,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        head_dropout: float = 0.0,
        retrain_from_scratch: bool = False,
        optimizer: OptimizerCallable = sgd,
        scheduler: LRSchedulerCallable = multistep,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"])
        self.net = backbone(num_classes, in_channels)
        self.channels_last = channels_last
        if channels_last:  # NHWC convolutions: faster with tensor cores and bf16 on GPUs
            self.net = self.net.to(memory_format=torch.channels_last)
        if not isinstance(compile, (bool, dict)):
            raise ConfigError(
                f"model.compile must be true, false or a dict of torch.compile arguments, got {compile!r}"
            )
        self._compile_args = ({} if compile is True else dict(compile)) if compile else None
        self.loss_head = LossPredictionHead(self.net.feature_channels, aux_hidden) if use_aux else None
        if not 0.0 <= head_dropout < 1.0:
            raise ConfigError(f"model.head_dropout must be in [0, 1), got {head_dropout}")
        self.head_dropout = attach_head_dropout(self.net, head_dropout) if head_dropout > 0 else None
        self.retrain_from_scratch = retrain_from_scratch
        # the weights every round starts from: a copy on the CPU, made only when they are needed
        self._initial_weights = initial_weights(self) if retrain_from_scratch else None
        self.margin, self.aux_weight, self.epoch_loss = margin, aux_weight, epoch_loss
        self.schedule_aux = schedule_aux
        self._optimizer, self._scheduler = optimizer, scheduler
        self.automatic_optimization = False
        self._epoch_sums: Tensor | None = (
            None  # per training epoch: loss, ce, ranking loss (x batch size), correct, seen
        )
        self.round_index, self.round_first_epoch = 0, 0  # see start_round
        self.epoch_in_round = 0  # this epoch's place in its round, set as each epoch starts

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[0]

    def train_net(self) -> Callable[[Tensor], tuple[Tensor, list[Tensor]]]:
        """M as the training step runs it: compiled (built once, on first use) when ``compile``."""
        if self._compile_args is None:
            return self.net
        compiled = self.__dict__.get("_compiled_net")
        if compiled is None or compiled._orig_mod is not self.net:
            # kept out of the module tree: the checkpoint keys stay those of M
            compiled = self.__dict__["_compiled_net"] = torch.compile(self.net, **self._compile_args)
        return compiled

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_compiled_net", None)  # copies and pickles compile again when they train
        return state

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """(total, mean cross-entropy, ranking loss or None, logits) of a batch."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits, feats = (self.train_net() if self.training else self.net)(x)
        target_loss = F.cross_entropy(logits, y, reduction="none")  # (B,)
        ce = target_loss.mean()
        if self.loss_head is None:
            return ce, ce, None, logits
        if self.epoch_in_round > self.epoch_loss:
            feats = [f.detach() for f in feats]
        aux = loss_prediction_loss(self.loss_head(feats), target_loss, self.margin)
        return ce + self.aux_weight * aux, ce, aux, logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss, ce, aux, logits = self.losses(x, y)
        opts = _as_list(self.optimizers())
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for opt in opts:
            opt.step()
        self._accumulate(loss, ce, aux, logits, y)
        if batch_idx + 1 == self.trainer.num_training_batches:
            self._log_epoch_metrics()
        return loss

    def _accumulate(self, loss: Tensor, ce: Tensor, aux: Tensor | None, logits: Tensor, y: Tensor) -> None:
        """Epoch sums on the device: a few tensor ops a step instead of a ``self.log`` per metric,
        whose bookkeeping costs Lightning about 0.5 ms each on a CPU (benchmarks/train_speed.py),
        and no host sync: the loss's finiteness is checked once per epoch, on these sums."""
        n = len(y)
        step = torch.stack(
            [
                loss.detach() * n,
                ce.detach() * n,
                (aux.detach() if aux is not None else ce.new_zeros(())) * n,
                (logits.detach().argmax(1) == y).sum().to(ce.dtype),
                torch.full((), n, dtype=ce.dtype, device=ce.device),
            ]
        ).double()
        self._epoch_sums = step if self._epoch_sums is None else self._epoch_sums + step

    def _log_epoch_metrics(self) -> None:
        """The epoch's means over every process's samples (sums reduced across processes), logged
        once, at the epoch's last batch: callbacks see them in ``on_train_epoch_end``."""
        sums = self.trainer.strategy.reduce(self._epoch_sums, reduce_op="sum")
        if not bool(torch.isfinite(sums).all()):  # the epoch's one host sync
            raise TrainingDivergedError(
                f"the training loss became {float(sums[0] / sums[4])} in round {self.round_index}, epoch "
                f"{self.epoch_in_round} of the round (global epoch {self.current_epoch}): stopped; the last good "
                "checkpoint, of the epoch before, is kept (checkpoints/last.ckpt of the run folder)"
            )
        loss, ce, aux, correct = (sums[:4] / sums[4]).float().unbind()
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=1)
        self.log("train/ce", ce, on_step=False, on_epoch=True, batch_size=1)
        if self.loss_head is not None:
            self.log("train/ranking_loss", aux, on_step=False, on_epoch=True, batch_size=1)
        self.log("train/acc", correct, on_step=False, on_epoch=True, batch_size=1)

    def start_round(self, index: int, first_epoch: int) -> None:
        """Round ``index`` trains from global epoch ``first_epoch`` on: A's detaching and M's
        schedule count the round's epochs from there. The rounds loop calls it when a round
        starts (and on a resume); a run of one round (the labeling app) keeps (0, 0)."""
        self.round_index, self.round_first_epoch = index, first_epoch

    def advance_round(self, index: int, first_epoch: int) -> None:
        """The rounds loop moves on to round ``index``: as :meth:`start_round`, and with
        ``retrain_from_scratch`` M and A start again from their initial weights."""
        self.start_round(index, first_epoch)
        if self._initial_weights is not None:
            for name, state in self._initial_weights.items():
                getattr(self, name).load_state_dict(state)

    def on_train_epoch_start(self) -> None:
        self.epoch_in_round = self.current_epoch - self.round_first_epoch
        self._epoch_sums = None
        # stepping at the start of every epoch but a round's first equals stepping after each epoch,
        # and leaves the schedule right when a round's fresh optimisers were just made
        if self.epoch_in_round > 0:
            for i, s in enumerate(_as_list(self.lr_schedulers())):
                if s is not None and (i == 0 or self.schedule_aux):
                    s.step()
        self.log("train/lr", _as_list(self.optimizers())[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def configure_optimizers(self):
        groups = [self.net.parameters()] + ([self.loss_head.parameters()] if self.loss_head is not None else [])
        optimizers = [self._optimizer(g) for g in groups]
        schedulers = [self._scheduler(o) for o in optimizers]
        return optimizers, [{"scheduler": s, "interval": "epoch"} for s in schedulers]
