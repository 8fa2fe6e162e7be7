"""The one split both applications use, the one query path, and the rounds loop's hooks."""

import pytest
import torch
from lightning.pytorch import Callback

from lplgrad.callbacks import RoundCallback
from lplgrad.cli import cli_main
from lplgrad.datasets import Transformed
from lplgrad.query import query
from lplgrad.split import Split
from lplgrad.strategies import Entropy, Random


def test_seed_formula_is_unchanged():
    """Runs made before the split was shared draw the same sets: seed * 1000003 + round * 101 + purpose."""
    split = Split.random_initial(500, 20, seed=7)
    expected = torch.randperm(500, generator=torch.Generator().manual_seed(7 * 1_000_003))[:20]
    assert torch.equal(split.labeled, expected)
    pool = split.unlabeled()
    perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(7 * 1_000_003 + 3 * 101 + 1))
    assert torch.equal(split.candidates(3, 50), pool[perm[:50]].sort().values)
    assert split.generator(2, "strategy").initial_seed() == 7 * 1_000_003 + 2 * 101 + 2


def test_candidates_growth_and_state():
    split = Split(10, seed=0, labeled=torch.tensor([3, 1]))
    assert split.unlabeled().tolist() == [0, 2, 4, 5, 6, 7, 8, 9]
    assert torch.equal(split.candidates(0, None), split.unlabeled())
    assert torch.equal(split.candidates(0, 8), split.unlabeled())  # S as large as the pool: all of it
    assert len(split.candidates(0, 3)) == 3
    split.add(torch.tensor([9, 0]), round_=0)
    assert split.labeled.tolist() == [3, 1, 9, 0] and split.labeled_round.tolist() == [-1, -1, 0, 0]
    for bad in ([2, 2], [3], [10]):
        with pytest.raises(RuntimeError):
            split.add(torch.tensor(bad), round_=1)
    copy = Split(10, seed=0)
    copy.load_state_dict(split.state_dict())
    assert torch.equal(copy.labeled, split.labeled) and torch.equal(copy.labeled_round, split.labeled_round)


class Recorder(RoundCallback):
    def __init__(self):
        self.calls = []

    def on_round_end(self, trainer, pl_module, event):
        self.calls.append(("round_end", event.round, event.labeled))

    def on_query_start(self, trainer, pl_module, total, what):
        self.calls.append(("start", total, what))

    def on_query_end(self, trainer, pl_module):
        self.calls.append(("end",))


class NotARoundCallback(Callback):
    """Has a method of the same name but does not derive from RoundCallback: never called."""

    def __init__(self):
        self.called = False

    def on_round_end(self, trainer, pl_module, event):
        self.called = True


def test_round_hooks_are_declared_and_called(tiny_fit):
    cli = cli_main(tiny_fit(subcommand=False), run=False)
    rec, other = Recorder(), NotARoundCallback()
    cli.trainer.callbacks += [rec, other]
    cli.trainer.fit(cli.model, cli.datamodule)
    assert [c for c in rec.calls if c[0] == "round_end"] == [
        ("round_end", 0, 20),
        ("round_end", 1, 35),
        ("round_end", 2, 50),
    ]
    assert ("start", 60, "candidates") in rec.calls and ("end",) in rec.calls
    assert not other.called
    assert all(
        hasattr(RoundCallback, h) for h in ("on_round_end", "on_query_start", "on_query_progress", "on_query_end")
    )


def test_a_strategy_that_needs_no_images_decodes_none(tiny_fit, monkeypatch):
    cli = cli_main(tiny_fit(subcommand=False), run=False)
    dm, learner = cli.datamodule, cli.model
    dm.setup()
    decoded = []
    original = Transformed.__getitem__
    monkeypatch.setattr(Transformed, "__getitem__", lambda self, i: decoded.append(i) or original(self, i))
    rnd = query(learner, Random(), dm.query_pool(), 0, 15)
    assert decoded == [] and len(rnd.selected) == 15 and len(rnd.candidates) == 60
    ent = query(learner, Entropy(), dm.query_pool(), 0, 15)
    assert len(decoded) == 60 and torch.equal(ent.candidates, rnd.candidates)
    assert learner.training  # the query leaves the mode as it found it
