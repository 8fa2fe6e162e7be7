"""The backend's re-scoring takes the network's classes from the logits M computes while the
strategy measures (:mod:`lplgrad.serve.scoring`): they must be those of the separate forward
pass (:func:`lplgrad.labeling.propose.predict`), for a gradient strategy (whose chunk-size probe
is left out), a no-gradient one and one that also measures the labelled images; a strategy that
runs M twice per image falls back to that pass."""

import pytest
import torch

from helpers.shapes import make_shapes
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.propose import predict, propose
from lplgrad.module import ActiveLearner
from lplgrad.nets import ResNet18
from lplgrad.serve.scoring import LogitsOfMeasure, score_and_classify
from lplgrad.strategies import Coreset, Entropy, LPLgrad


class TwiceEntropy(Entropy):
    """Runs M twice on each batch: its logits are not one row per image."""

    def measure(self, learner, x):
        learner.net(x)
        return super().measure(learner, x)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    truth = make_shapes(root / "images", n=24)
    labelled = sorted(truth)[:6]
    (root / "labels.csv").write_text("path,label\n" + "".join(f"{p},{truth[p]}\n" for p in labelled))
    torch.manual_seed(0)
    learner = ActiveLearner(backbone=lambda c, i: ResNet18(c, i, width=2), num_classes=3, use_aux=True)
    return root, learner


def data(root) -> LabelFolderData:
    return LabelFolderData(
        str(root / "images"), str(root / "labels.csv"), "circle,square,triangle", image_size=16, eval_batch_size=5
    )


@pytest.mark.parametrize("strategy", [LPLgrad(chunk_size=3), LPLgrad(), Entropy(), Coreset()], ids=repr)
def test_classes_from_the_measured_logits_equal_the_forward_pass(folder, strategy):
    root, learner = folder
    dm = data(root)
    n = len(dm.split.unlabeled())
    expected = propose(learner, dm, strategy, n, 1, torch.device("cpu"))
    predict(learner, dm, expected, torch.device("cpu"))
    with LogitsOfMeasure(learner.net, strategy) as caught:
        propose(learner, dm, strategy, n, 1, torch.device("cpu"))
    assert caught.logits(n + (len(dm.split) if strategy.uses_labeled else 0)) is not None
    got = score_and_classify(learner, data(root), strategy, n, 1, torch.device("cpu"), 0, trained=True)
    assert got.indices.tolist() == expected.indices.tolist() and got.predicted == expected.predicted
    assert got.confidence == pytest.approx(expected.confidence, abs=1e-5)
    assert "measure" not in vars(strategy)  # the strategy is itself again


def test_a_strategy_that_runs_the_network_twice_falls_back_to_the_forward_pass(folder):
    root, learner = folder
    dm, strategy = data(root), TwiceEntropy()
    n = len(dm.split.unlabeled())
    with LogitsOfMeasure(learner.net, strategy) as caught:
        expected = propose(learner, dm, strategy, n, 1, torch.device("cpu"))
    assert caught.logits(n) is None
    predict(learner, dm, expected, torch.device("cpu"))
    got = score_and_classify(learner, data(root), strategy, n, 1, torch.device("cpu"), 0, trained=True)
    assert got.predicted == expected.predicted and got.confidence == expected.confidence
