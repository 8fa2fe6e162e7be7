"""BALD and BatchBALD: MC dropout's T passes, the mutual information, and BatchBALD's greedy
joint entropy against brute force."""

import itertools
import math

import pytest
import torch
from torch import nn

from lplgrad.errors import ConfigError
from lplgrad.module import ActiveLearner
from lplgrad.nets import SmallCNN
from lplgrad.nets.dropout import consistent_masks
from lplgrad.strategies import BALD, BatchBALD, SwitchAt, Random, check_learner
from lplgrad.strategies.bald import mutual_information
from lplgrad.strategies.batchbald import Configurations, batchbald_picks
from lplgrad.strategies.mc_dropout import _full, _head_only, mc_log_probs

from test_strategies import context


class DropNet(nn.Module):
    """A backbone with dropout inside: conv, channel dropout, pooling, linear head."""

    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv, self.drop = nn.Conv2d(in_channels, 6, 3), nn.Dropout2d(0.3)
        self.linear = nn.Linear(6, num_classes)
        self.rows = []  # the batch size each dropout call saw

    @property
    def head(self):
        return self.linear

    def forward(self, x):
        f = self.drop(torch.relu(self.conv(x)))
        self.rows.append(len(f))
        return self.linear(f.mean((2, 3))), [f]


def learner(head_dropout=0.5, backbone=None):
    torch.manual_seed(0)
    net = backbone or (lambda c, i: SmallCNN(c, i, width=4))
    return ActiveLearner(net, num_classes=3, in_channels=1, use_aux=False, head_dropout=head_dropout).eval()


def brute_joint_entropy(probs, idx):
    """H(y_idx) of the mixture over T passes, every configuration enumerated."""
    t, c = probs.shape[1], probs.shape[2]
    h = 0.0
    for ys in itertools.product(range(c), repeat=len(idx)):
        p = torch.ones(t, dtype=torch.float64)
        for i, y in zip(idx, ys):
            p = p * probs[i, :, y]
        q = float(p.mean())
        h -= q * math.log(q) if q > 0 else 0.0
    return h


def random_probs(n, t, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, c, generator=g, dtype=torch.float64).mul(2).softmax(-1)


# ---- MC dropout ----------------------------------------------------------------------------------
def test_the_dropout_layer_is_an_option_and_adds_no_weights():
    plain, dropped = learner(0.0), learner(0.5)
    assert plain.head_dropout is None and dropped.head_dropout.p == 0.5
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    x = torch.randn(4, 1, 16, 16)
    assert torch.equal(plain.net(x)[0], dropped.net(x)[0])  # eval mode: the same network
    dropped.train()
    assert not torch.equal(plain.net(x)[0], dropped.net(x)[0])  # training: dropout is on


def test_m_evaluated_alone_has_no_dropout_while_the_learner_trains():
    """The test evaluation runs ``run_eval(learner.net, ...)`` at a round's end, with the learner
    still in train mode: the dropout before the classifier must follow M's mode, not the learner's
    (until 2026-12-03 it followed the learner's, and dropped at test time)."""
    from lplgrad.inference import run_eval

    plain, dropped = learner(0.0).train(), learner(0.5).train()
    x = torch.randn(8, 1, 16, 16)

    def logits(m):
        return run_eval(m.net, [(x, None)], torch.device("cpu"), lambda b, _: m.net(b)[0])[0]

    assert torch.equal(logits(dropped), logits(plain)) and torch.equal(logits(dropped), logits(dropped))
    assert dropped.training and dropped.head_dropout.training  # the learner was left as it was


def test_head_only_passes_equal_the_full_passes():
    m = learner(0.5)
    x = torch.randn(5, 1, 16, 16)
    with torch.no_grad():
        a, b = _head_only(m, x, 6, seed=3), _full(m, x, 6, seed=3)
    assert a.shape == (5, 6, 3)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 0], a[:, 1])  # the passes differ


def test_masks_are_the_same_for_every_batch_and_do_not_depend_on_t():
    m = learner(0.5)
    x = torch.randn(6, 1, 16, 16)
    whole = mc_log_probs(m, x, 8, seed=1)
    parts = torch.cat([mc_log_probs(m, x[:2], 8, seed=1), mc_log_probs(m, x[2:], 8, seed=1)])
    torch.testing.assert_close(whole, parts)  # consistent: pass t is one network for all images
    torch.testing.assert_close(mc_log_probs(m, x, 4, seed=1), whole[:, :4])
    masks = consistent_masks((1000,), 0.25, 2, seed=0)
    assert (
        masks.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
        and abs(float((masks == 0).float().mean()) - 0.25) < 0.05
    )


def test_dropout_inside_the_backbone_runs_t_passes_in_one_forward():
    m = learner(0.0, DropNet)
    x = torch.randn(5, 1, 16, 16)
    out = mc_log_probs(m, x, 4, seed=0)
    assert out.shape == (5, 4, 3) and m.net.rows == [20]  # T x B rows, one forward
    assert not torch.allclose(out[:, 0], out[:, 1])
    parts = torch.cat([mc_log_probs(m, x[:3], 4, seed=0), mc_log_probs(m, x[3:], 4, seed=0)])
    torch.testing.assert_close(out, parts)  # the same channel masks for every batch
    check_learner(BALD(), m)  # its own dropout is enough
    with torch.no_grad():
        assert torch.equal(m.net(x)[0], m.net(x)[0])  # the hooks are gone: eval mode is deterministic again


def test_bald_needs_dropout():
    with pytest.raises(ConfigError, match="set model.head_dropout"):
        check_learner(BALD(), learner(0.0))
    with pytest.raises(ConfigError, match="set model.head_dropout"):
        check_learner(SwitchAt(Random(), BatchBALD(), 10), learner(0.0))
    check_learner(BALD(), learner(0.5))
    with pytest.raises(ConfigError, match="at least 2"):
        BALD(samples=1)


# ---- the scores ----------------------------------------------------------------------------------
def test_mutual_information_by_hand():
    agree = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]]).log()  # both passes unsure: no disagreement
    disagree = torch.tensor([[[1.0 - 1e-9, 1e-9], [1e-9, 1.0 - 1e-9]]]).log()  # sure and opposite
    assert float(mutual_information(agree)) == pytest.approx(0.0, abs=1e-9)
    assert float(mutual_information(disagree)) == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("picked", [[], [2], [2, 4], [0, 3, 5]])
def test_exact_joint_entropy_equals_brute_force(picked):
    probs = random_probs(6, 5, 3)
    state = Configurations(5, 10_000, torch.device("cpu"))
    for i in picked:
        state.add(probs[i], torch.Generator())
    assert state.exact
    got = state.joint_entropy(probs)
    for n in range(6):
        assert float(got[n]) == pytest.approx(brute_joint_entropy(probs, picked + [n]), abs=1e-10)


def test_sampled_joint_entropy_approaches_brute_force():
    probs = random_probs(5, 4, 3, seed=1)
    state = Configurations(4, 4, torch.device("cpu"))  # 3 * 3 > 4: sampled from the second point on
    g = torch.Generator().manual_seed(0)
    state.budget = 20_000
    state.add(probs[0], g)
    state._sample(g)
    state.add(probs[1], g)
    assert not state.exact and state.log_p.shape == (20_000, 4)
    got = state.joint_entropy(probs)
    for n in range(5):
        assert float(got[n]) == pytest.approx(brute_joint_entropy(probs, [0, 1, n]), abs=0.02)


def test_greedy_picks_maximise_the_joint_information_step_by_step():
    probs = random_probs(7, 4, 2, seed=2)
    cond = -(probs * probs.log()).sum(-1).mean(-1)
    picks = batchbald_picks(probs, 3, 10_000, torch.Generator()).tolist()
    chosen = []
    for p in picks:
        gains = {
            n: brute_joint_entropy(probs, chosen + [n]) - float(cond[chosen + [n]].sum())
            for n in range(7)
            if n not in chosen
        }
        assert p == max(gains, key=lambda n: (gains[n], -n))
        chosen.append(p)


def disagreeing_pool():
    """Three copies of one point and two others: each point's passes are sure of their label but
    disagree with each other, so a copy tells nothing new once one copy is labeled."""
    sure = 1e-6

    def point(labels):
        rows = [[1 - sure, sure] if y == 0 else [sure, 1 - sure] for y in labels]
        return torch.tensor(rows, dtype=torch.float64)

    a = point([0, 1, 0, 1])
    return torch.stack([a, a, a, point([0, 1, 1, 1]), point([0, 0, 0, 1])])  # (5, T=4, C=2)


def test_batchbald_avoids_the_duplicates_that_bald_picks():
    probs = disagreeing_pool()
    bald = mutual_information(probs.log())
    assert torch.topk(bald, 3).indices.sort().values.tolist() == [0, 1, 2]  # BALD: the three copies
    picks = batchbald_picks(probs, 3, 10_000, torch.Generator()).tolist()
    assert picks[0] == 0 and 1 not in picks and 2 not in picks  # one copy, then the others


def test_batchbald_scores_through_the_strategy_interface():
    probs = disagreeing_pool()
    s = BatchBALD(samples=4)
    scores = s.scores(probs.log().float(), context(3))
    assert scores.tolist()[:3] == [3.0, 0.0, 0.0] and sorted(scores.tolist()) == [0.0, 0.0, 1.0, 2.0, 3.0]
