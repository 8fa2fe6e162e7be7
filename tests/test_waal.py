"""WAAL (issue 27): the critic's terms by hand, the unlabeled batches beside the labeled ones, the
critic's training, the query's direction, and the one-line refusal without a critic."""

import math

import pytest
import torch
from torch import nn

from lplgrad.adversary import WAALAdversary, critic_gradients, gradient_penalty, wasserstein_gap
from lplgrad.cli import cli_main
from lplgrad.errors import ConfigError
from lplgrad.losses import waal_score
from lplgrad.module import ActiveLearner
from lplgrad.nets import SmallCNN
from lplgrad.pool_data import unlabeled_partners
from lplgrad.strategies import WAAL, check_learner

WAAL_ARGS = ["--strategy", "lplgrad.strategies.WAAL", "--model.adversary", "lplgrad.adversary.WAALAdversary"]


def test_waal_score_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (1/2, 1/2) and (3/4, 1/4)
    critic = torch.tensor([0.2, 0.9])
    u0 = 0.5 * math.sqrt(2) * math.log(2) + 0.5 * 2 * math.log(2)
    u1 = 0.5 * math.hypot(math.log(4 / 3), math.log(4)) + 0.5 * (math.log(4 / 3) + math.log(4))
    expected = torch.tensor([10 * 0.2 - u0, 10 * 0.9 - u1])
    assert torch.allclose(waal_score(logits, critic, 10.0), expected, atol=1e-6)
    # without the critic's weight the uncertain (uniform) prediction comes first
    assert torch.argmax(waal_score(logits, critic, 0.0)) == 0


def test_gradient_penalty_of_a_linear_critic():
    """D(z) = w.z has gradient w everywhere: the penalty is (||w|| - 1)^2."""
    critic = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))
    z_u, z_l = torch.randn(5, 3), torch.randn(4, 3)

    def d(z):
        return critic(z).squeeze(1)

    gp = gradient_penalty(d, z_u, z_l, torch.rand(4))
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2)
    (g,) = torch.autograd.grad(gp, critic.weight)  # differentiable in the critic: 2 (||w|| - 1) w / ||w||
    assert torch.allclose(g, 2 * 4.0 * critic.weight / 5.0)


def test_wasserstein_gap_weights_the_labeled_term():
    assert wasserstein_gap(torch.tensor([0.8, 0.6]), torch.tensor([0.2, 0.4]), 0.5).item() == pytest.approx(0.55)


def test_the_critic_learns_to_tell_unlabeled_from_labeled_features():
    torch.manual_seed(0)
    adv = WAALAdversary(alpha=1.0, penalty=2.0, dropout=0.0, lr=0.1, momentum=0.5)
    critic = adv.build(8)
    opt = adv.optimizer(critic.parameters())
    z_u, z_l = torch.randn(64, 8) + 2.0, torch.randn(64, 8) - 2.0  # two well separated sets
    before = wasserstein_gap(critic(z_u), critic(z_l), 1.0).item()
    for _ in range(60):
        grads = critic_gradients(critic, z_u, z_l, 1.0, adv)
        opt.zero_grad()
        for p, g in zip(critic.parameters(), grads):
            p.grad = g
        opt.step()
    after = wasserstein_gap(critic(z_u), critic(z_l), 1.0).item()
    assert after > before + 0.3 and critic(z_u).mean() > 0.6 > 0.4 > critic(z_l).mean()
    assert all(p.grad is not None for p in critic.parameters())


def test_critic_gradients_leave_grad_untouched():
    """Computed with autograd.grad: nothing accumulates in .grad (under DDP, M's backward is the
    step's only one)."""
    adv = WAALAdversary()
    critic = adv.build(4)
    critic_gradients(critic, torch.randn(6, 4), torch.randn(6, 4), 0.3, adv)
    assert all(p.grad is None for p in critic.parameters())


def test_unlabeled_partners_are_seeded_and_unlabeled():
    unlabeled = torch.arange(100, 140)
    a = unlabeled_partners(unlabeled, 25, seed=3, epoch=7)
    assert len(a) == 25 == len(set(a.tolist())) and set(a.tolist()) <= set(unlabeled.tolist())
    assert torch.equal(a, unlabeled_partners(unlabeled, 25, seed=3, epoch=7))
    assert not torch.equal(a, unlabeled_partners(unlabeled, 25, seed=3, epoch=8))
    few = unlabeled_partners(torch.arange(5), 12, seed=0, epoch=0)  # fewer than asked: each repeated
    assert len(few) == 12 and sorted(set(few.tolist())) == [0, 1, 2, 3, 4]


def test_waal_without_a_critic_is_refused():
    learner = ActiveLearner(SmallCNN, num_classes=3, in_channels=1, use_aux=False)
    with pytest.raises(ConfigError, match="set model.adversary lplgrad.adversary.WAALAdversary"):
        check_learner(WAAL(), learner)
    check_learner(WAAL(), ActiveLearner(SmallCNN, 3, 1, use_aux=False, adversary=WAALAdversary()))


def test_the_query_ranks_by_the_critic_and_the_uncertainty():
    learner = ActiveLearner(SmallCNN, num_classes=3, in_channels=1, use_aux=False, adversary=WAALAdversary()).eval()
    x = torch.randn(6, 1, 8, 8)
    got = WAAL(selection=10.0).measure(learner, x)
    with torch.no_grad():
        logits, _ = learner.net(x)
        z = {}
        learner.net.head.register_forward_pre_hook(lambda m, i: z.setdefault("z", i[0]))
        learner.net(x)
        expected = waal_score(logits, learner.critic(z["z"]), 10.0)
    assert torch.allclose(got, expected)


def test_training_pairs_every_labeled_batch_with_unlabeled_images(tmp_path, tiny_fit, monkeypatch):
    """Each training step sees as many unlabeled images as labeled ones, drawn from the unlabeled
    pool, with no label (-1s); the critic and M both train, and the critic's gap is logged."""
    import lplgrad.pool_data

    drawn, steps = [], []
    draw = lplgrad.pool_data.unlabeled_partners

    def spy_draw(unlabeled, n, seed, epoch):
        out = draw(unlabeled, n, seed, epoch)
        drawn.append((out, unlabeled.clone()))
        return out

    losses = ActiveLearner.adversarial_losses

    def spy_step(self, x, y, x_u):
        steps.append((len(x), len(x_u)))
        return losses(self, x, y, x_u)

    monkeypatch.setattr(lplgrad.pool_data, "unlabeled_partners", spy_draw)
    monkeypatch.setattr(ActiveLearner, "adversarial_losses", spy_step)
    cli = cli_main(tiny_fit(*WAAL_ARGS, "--model.use_aux", "false", subcommand=False), run=False)
    critic0 = {k: v.clone() for k, v in cli.model.critic.state_dict().items()}
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert steps and all(n == n_u for n, n_u in steps)
    assert drawn and all(set(out.tolist()) <= set(unlabeled.tolist()) for out, unlabeled in drawn)
    loader = cli.datamodule.train_dataloader()  # the last round's: its unlabeled half has no labels
    for batch, _, _ in iter(loader):
        (_, y), (x_u, y_u) = batch["labeled"], batch["unlabeled"]
        assert y_u.tolist() == [-1] * len(x_u) and len(x_u) == len(y)
    critic1 = cli.model.critic.state_dict()
    assert any(not torch.equal(critic0[k], critic1[k]) for k in critic0)
    assert "train/critic_gap" in cli.trainer.logged_metrics
