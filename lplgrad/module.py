"""The LightningModule: main model M trained jointly with the loss-prediction model A (docs/method.md §2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F

from lplgrad.adversary import WAALAdversary, critic_gradients, wasserstein_gap
from lplgrad.errors import ConfigError, TrainingDivergedError
from lplgrad.losses import loss_prediction_loss
from lplgrad.nets import LossPredictionHead, ResNet18
from lplgrad.nets.classifier_input import classifier_inputs
from lplgrad.nets.cut import FeatureCut
from lplgrad.nets.dropout import attach_head_dropout


def sgd(params: Iterable) -> torch.optim.Optimizer:
    """The paper's optimiser: SGD, lr 0.1, momentum 0.9, weight decay 5e-4."""
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)


def multistep(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The paper's CIFAR schedule: lr x0.1 at epoch 160 of each round."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[160], gamma=0.1)


def initial_weights(learner: nn.Module) -> dict[str, dict[str, Tensor]]:
    """A CPU copy of M's, A's and the critic's state (weights and BatchNorm statistics), by attribute name."""
    parts = {"net": learner.net, "loss_head": learner.loss_head, "critic": learner.critic}
    return {
        name: {k: v.detach().cpu().clone() for k, v in part.state_dict().items()}
        for name, part in parts.items()
        if part is not None
    }


def _as_list(x) -> list:
    return x if isinstance(x, list) else [x]


def _unpack(batch) -> tuple[Tensor, Tensor, Tensor | None]:
    """(labeled images, their labels, unlabeled images or None) of a training batch: a pair, or the
    data module's {"labeled": pair, "unlabeled": pair} when the learner trains on unlabeled images
    too (the unlabeled pair's second item is a row of -1: no label is read)."""
    if isinstance(batch, dict):
        (x, y), (x_u, _) = batch["labeled"], batch["unlabeled"]
        return x, y, x_u
    x, y = batch
    return x, y, None


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
        adversary: train M against a Wasserstein critic on its classifier input, with a batch of
            unlabeled images beside every labeled one (WAAL, :mod:`lplgrad.adversary`; None: no
            critic, the default). The WAAL strategy queries with the critic.
        feature_cache: M is a :class:`~lplgrad.nets.cut.FeatureCut` of the backbone, which takes the
            data's cached rows of frozen features as well as images (the CLIs link it from
            ``data.feature_cache``; docs/features.md). The backbone must be frozen below some point.
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
        adversary: WAALAdversary | None = None,
        feature_cache: bool = False,
        optimizer: OptimizerCallable = sgd,
        scheduler: LRSchedulerCallable = multistep,
    ) -> None:
        super().__init__()
        # the adversary is an object (checkpoints load with weights_only=True): config.yaml records it
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler", "adversary"])
        self.net = backbone(num_classes, in_channels)
        self.channels_last = channels_last
        if channels_last:  # NHWC convolutions: faster with tensor cores and bf16 on GPUs
            self.net = self.net.to(memory_format=torch.channels_last)
        self.feature_cache = feature_cache
        if feature_cache:  # the same state_dict keys: checkpoints are those of an uncached run
            self.net = FeatureCut(self.net)
        if not isinstance(compile, (bool, dict)):
            raise ConfigError(
                f"model.compile must be true, false or a dict of torch.compile arguments, got {compile!r}"
            )
        self._compile_args = ({} if compile is True else dict(compile)) if compile else None
        self.loss_head = LossPredictionHead(self.net.feature_channels, aux_hidden) if use_aux else None
        if not 0.0 <= head_dropout < 1.0:
            raise ConfigError(f"model.head_dropout must be in [0, 1), got {head_dropout}")
        self.head_dropout = attach_head_dropout(self.net, head_dropout) if head_dropout > 0 else None
        self.adversary = adversary
        self.critic = adversary.build(self.net.head.in_features) if adversary is not None else None
        self._gamma = 1.0  # the critic's labeled-term weight, set as each epoch starts
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

    @property
    def trains_on_unlabeled(self) -> bool:
        """Whether each training batch needs unlabeled images beside the labeled ones (WAAL's
        critic): the data modules read this flag and pair every labeled batch with one."""
        return self.critic is not None

    def _forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self.train_net() if self.training else self.net)(x)

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """(total, mean cross-entropy, ranking loss or None, logits) of a batch."""
        logits, feats = self._forward(x)
        return self._supervised(logits, feats, y)

    def _supervised(
        self, logits: Tensor, feats: list[Tensor], y: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        target_loss = F.cross_entropy(logits, y, reduction="none")  # (B,)
        ce = target_loss.mean()
        if self.loss_head is None:
            return ce, ce, None, logits
        if self.epoch_in_round > self.epoch_loss:
            feats = [f.detach() for f in feats]
        aux = loss_prediction_loss(self.loss_head(feats), target_loss, self.margin)
        return ce + self.aux_weight * aux, ce, aux, logits

    def adversarial_losses(self, x: Tensor, y: Tensor, x_u: Tensor):
        """WAAL's step (:mod:`lplgrad.adversary`): the supervised losses plus alpha times the
        critic's gap between the unlabeled and the labeled batch's classifier inputs. Returns
        (total, cross-entropy, ranking loss or None, logits, gap, z_l (B, D), z_u (B_u, D)); labeled
        and unlabeled images pass through M separately, as in the authors' code."""
        with classifier_inputs(self.net) as seen:
            logits, feats = self._forward(x)
            self._forward(x_u)
        z_l, z_u = seen[0].flatten(1), seen[1].flatten(1)  # (B, D), (B_u, D)
        loss, ce, aux, logits = self._supervised(logits, feats, y)
        gap = wasserstein_gap(self.critic(z_u), self.critic(z_l), self._gamma)
        return loss + self.adversary.alpha * gap, ce, aux, logits, gap, z_l, z_u

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, y, x_u = _unpack(batch)
        opts = list(_as_list(self.optimizers()))
        critic_opt = opts.pop() if self.critic is not None else None  # configure_optimizers puts it last
        if critic_opt is not None:
            loss, ce, aux, logits, gap, z_l, z_u = self.adversarial_losses(x, y, x_u)
        else:
            (loss, ce, aux, logits), gap = self.losses(x, y), None
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for opt in opts:
            opt.step()
        if critic_opt is not None:
            self._critic_step(critic_opt, z_u, z_l)
        self._accumulate(loss, ce, aux, logits, y, gap)
        if batch_idx + 1 == self.trainer.num_training_batches:
            self._log_epoch_metrics()
        return loss

    def _critic_step(self, opt, z_u: Tensor, z_l: Tensor) -> None:
        """One step of the critic on the features of M's step. Its gradients are averaged over
        the processes (one all-reduce), so every process's critic stays the same."""
        grads = critic_gradients(self.critic, z_u, z_l, self._gamma, self.adversary)
        if self.trainer.world_size > 1:
            flat = self.trainer.strategy.reduce(torch.cat([g.reshape(-1) for g in grads]), reduce_op="mean")
            grads = list(torch.split(flat, [g.numel() for g in grads]))
        opt.zero_grad(set_to_none=True)
        for p, g in zip((p for p in self.critic.parameters() if p.requires_grad), grads):
            p.grad = g.reshape(p.shape)
        opt.step()

    def _accumulate(
        self, loss: Tensor, ce: Tensor, aux: Tensor | None, logits: Tensor, y: Tensor, gap: Tensor | None = None
    ) -> None:
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
                (gap.detach() if gap is not None else ce.new_zeros(())) * n,
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
        if self.critic is not None:
            self.log("train/critic_gap", (sums[5] / sums[4]).float(), on_step=False, on_epoch=True, batch_size=1)
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
        if self.critic is not None:  # the authors' |L| / |U| of the round, unless set
            gamma = self.adversary.gamma
            self._gamma = gamma if gamma is not None else self.trainer.datamodule.labeled_ratio()
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
        schedulers = [{"scheduler": self._scheduler(o), "interval": "epoch"} for o in optimizers]
        if self.critic is not None:  # last, without a schedule (the authors' constant lr)
            optimizers.append(self.adversary.optimizer(self.critic.parameters()))
        return optimizers, schedulers
