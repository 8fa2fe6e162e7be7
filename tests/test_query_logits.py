"""The query keeps M's logits of the candidates while the strategy measures them
(:mod:`lplgrad.logits_tap`), and the labelling apps take the proposed images' classes from them:
they must be those of the separate forward pass (:func:`lplgrad.labeling.propose.predict`), for a
gradient strategy (whose chunk-size probe is left out), a no-gradient one and one that also
measures the labelled images. A strategy that runs M twice per image, or samples it with dropout,
keeps none, and the forward pass gives the classes."""

import pytest
import torch

from helpers.shapes import make_shapes
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.propose import predict, propose
from lplgrad.logits_tap import one_row_each
from lplgrad.module import ActiveLearner
from lplgrad.nets import ResNet18
from lplgrad.query import Placement, query
from lplgrad.strategies import BALD, Coreset, Entropy, LPLgrad

CPU = torch.device("cpu")


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
    learner = ActiveLearner(
        backbone=lambda c, i: ResNet18(c, i, width=2), num_classes=3, use_aux=True, head_dropout=0.5
    )
    return root, learner


def data(root) -> LabelFolderData:
    return LabelFolderData(
        str(root / "images"), str(root / "labels.csv"), "circle,square,triangle", image_size=16, eval_batch_size=5
    )


@pytest.mark.parametrize("strategy", [LPLgrad(chunk_size=3), LPLgrad(), Entropy(), Coreset()], ids=repr)
def test_classes_from_the_kept_logits_equal_the_forward_pass(folder, strategy):
    root, learner = folder
    dm = data(root)
    n = len(dm.split.unlabeled())
    kept = query(learner, strategy, dm.query_pool(), 1, n, Placement(CPU), keep_logits=True)
    assert kept.logits is not None and kept.logits.shape == (len(kept.candidates), 3)
    expected = propose(learner, dm, strategy, n, 1, CPU)
    predict(learner, dm, expected, CPU)
    got = propose(learner, data(root), strategy, n, 1, CPU, classify=True)
    assert got.indices.tolist() == expected.indices.tolist() and got.predicted == expected.predicted
    assert got.confidence == pytest.approx(expected.confidence, abs=1e-5)


@pytest.mark.parametrize("strategy", [TwiceEntropy(), BALD(samples=4)], ids=repr)
def test_no_logits_kept_from_two_passes_or_dropout_and_the_forward_pass_classifies(folder, strategy):
    root, learner = folder
    dm = data(root)
    n = len(dm.split.unlabeled())
    assert query(learner, strategy, dm.query_pool(), 1, n, Placement(CPU), keep_logits=True).logits is None
    expected = propose(learner, dm, strategy, n, 1, CPU)
    predict(learner, dm, expected, CPU)
    got = propose(learner, data(root), strategy, n, 1, CPU, classify=True)
    assert got.indices.tolist() == expected.indices.tolist()
    assert got.predicted == expected.predicted and got.confidence == expected.confidence


def test_one_row_each_prefers_the_gradient_passes_and_refuses_other_counts():
    probe, full = torch.zeros(1, 3), torch.ones(4, 3)
    assert torch.equal(one_row_each([(False, probe), (True, full)], 4), full)  # the probe left out
    assert torch.equal(one_row_each([(False, full[:2]), (False, full[2:])], 4), full)
    assert one_row_each([(False, full), (False, full)], 4) is None  # two passes per image
    assert one_row_each([], 4) is None
