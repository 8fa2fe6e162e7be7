"""The LightningModule: joint loss, detaching after epoch_loss, odd batches, fresh optimisers per round."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from lplgrad.cli import cli_main
from lplgrad.module import ActiveLearner
from lplgrad.nets import SmallCNN
from lplgrad.errors import ConfigError
from lplgrad.strategies import Entropy, LearningLoss, check_learner
from helpers.tiny import tiny_fit_args

ROOT = Path(__file__).resolve().parents[1]


def learner(**kw):
    return ActiveLearner(backbone=lambda c, i: SmallCNN(c, i, 4), num_classes=5, in_channels=3, **kw)


def test_odd_batches_and_batch_of_one_train():
    m = learner()
    for n in (1, 3, 8):
        x, y = torch.randn(n, 3, 16, 16), torch.randint(0, 5, (n,))
        total, ce, aux, logits = m.losses(x, y)
        total.backward()
        assert logits.shape == (n, 5) and torch.isfinite(total) and aux is not None


def test_features_detached_after_epoch_loss():
    m = learner(epoch_loss=3)
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 5, (6,))
    net_params = list(m.net.parameters())
    for epoch, flows in ((3, True), (4, False)):
        m.epoch_in_round = epoch
        _, _, aux, _ = m.losses(x, y)
        grads = torch.autograd.grad(aux, net_params, allow_unused=True)
        reached = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert reached == flows
        head = torch.autograd.grad(m.losses(x, y)[2], list(m.loss_head.parameters()))
        assert any(g.abs().sum() > 0 for g in head)  # A always learns


def test_a_round_counts_its_epochs_from_its_first(tiny_fit):
    """The rounds loop tells the module where each round starts; the module counts the round's epochs."""
    seen = []

    class Spy(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                seen.append((pl_module.round_index, pl_module.epoch_in_round))

    cli = cli_main(tiny_fit("--loop.epochs_per_round", "3", "--data.budget", "35")[1:], run=False)
    cli.trainer.callbacks.append(Spy())
    cli.trainer.fit(cli.model, cli.datamodule)
    assert seen == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_without_aux_and_strategy_needing_it():
    m = learner(use_aux=False)
    assert m.loss_head is None and len(m.configure_optimizers()[0]) == 1
    check_learner(Entropy(), m)
    with pytest.raises(ConfigError, match="set model.use_aux true"):
        check_learner(LearningLoss(), m)
    check_learner(LearningLoss(), learner(use_aux=True))


class Spy(Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx:
            return
        opts = trainer.optimizers
        self.rows.append(
            (
                trainer.current_epoch,
                id(opts[0]),
                opts[0].param_groups[0]["lr"],
                opts[1].param_groups[0]["lr"],
                pl_module.net.linear.weight.detach().clone(),
            )
        )

    def on_train_epoch_end(self, trainer, pl_module):
        self.last_weight = pl_module.net.linear.weight.detach().clone()
        self.rows[-1] = self.rows[-1] + (self.last_weight,)


def test_fresh_optimisers_each_round_weights_carry_over(tmp_path):
    args = tiny_fit_args(
        tmp_path,
        "--model.scheduler.init_args.milestones",
        "[1]",
        "--model.optimizer.init_args.lr",
        "0.05",
        subcommand=False,
        query=10,
        subset=40,
        budget=30,
        epochs=3,
    )
    cli = cli_main(args, run=False)
    spy = Spy()
    cli.trainer.callbacks.append(spy)
    cli.trainer.fit(cli.model, cli.datamodule)
    epochs = [r[0] for r in spy.rows]
    assert epochs == [0, 1, 2, 3, 4, 5]
    lr_m = [round(r[2], 6) for r in spy.rows]
    lr_a = [round(r[3], 6) for r in spy.rows]
    assert lr_m == [0.05, 0.005, 0.005, 0.05, 0.005, 0.005]  # MultiStepLR restarts each round
    assert lr_a == [0.05] * 6  # A's schedule is never stepped (authors' code)
    ids = [r[1] for r in spy.rows]
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] == ids[5] and ids[2] != ids[3]
    assert torch.equal(spy.rows[2][5], spy.rows[3][4])  # round 1 starts from round 0's weights


def test_epoch_metrics_are_sample_weighted_means_seen_by_callbacks():
    """train/* are means over the epoch's samples (an odd last batch weighs less), logged once at
    the last batch, so a callback's on_train_epoch_end reads this epoch's values."""
    from functools import partial

    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    m = learner(optimizer=partial(torch.optim.SGD, lr=0.0))  # M and A stay as they are all epoch
    x, y = torch.randn(11, 3, 16, 16), torch.randint(0, 5, (11,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)  # 4, 4, 3
    m.train()
    with torch.no_grad():
        parts = [m.losses(xb, yb) for xb, yb in loader]
    want = {
        "train/loss": sum(p[0] * len(yb) for p, (_, yb) in zip(parts, loader)) / 11,
        "train/ce": sum(p[1] * len(yb) for p, (_, yb) in zip(parts, loader)) / 11,
        "train/ranking_loss": sum(p[2] * len(yb) for p, (_, yb) in zip(parts, loader)) / 11,
        "train/acc": sum((p[3].argmax(1) == yb).sum() for p, (_, yb) in zip(parts, loader)) / 11,
    }
    seen = {}

    class Reader(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.update({k: trainer.callback_metrics[k].item() for k in want})

    Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Reader()],
    ).fit(m, loader)
    for k, v in want.items():
        assert abs(seen[k] - v.item()) < 1e-5, k


class WeightsAtRoundStart(Callback):
    """M's and A's weights at the first batch of every round (the round's first epoch)."""

    def __init__(self):
        self.first = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0 and pl_module.epoch_in_round == 0:
            self.first.append({k: v.clone() for k, v in pl_module.state_dict().items()})


@pytest.mark.parametrize("scratch", [False, True])
def test_retrain_from_scratch_starts_every_round_from_the_initial_weights(tmp_path, scratch):
    extra = ["--model.retrain_from_scratch", "true"] if scratch else []
    args = tiny_fit_args(tmp_path, *extra, subcommand=False, query=10, subset=40, budget=40, epochs=2)
    cli = cli_main(args, run=False)
    initial = {k: v.clone() for k, v in cli.model.state_dict().items()}
    spy = WeightsAtRoundStart()
    cli.trainer.callbacks.append(spy)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert len(spy.first) == 3 and all(torch.equal(spy.first[0][k], initial[k]) for k in initial)
    for later in spy.first[1:]:
        same = all(torch.equal(later[k], initial[k]) for k in initial)
        assert same == scratch  # from scratch: M and A (BatchNorm statistics too) as at the start
    assert cli.model.hparams.retrain_from_scratch == scratch  # recorded with the run's hyperparameters
