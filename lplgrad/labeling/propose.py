"""The propose step: score the unlabeled images and pick the next b (written by :mod:`~lplgrad.labeling.outputs`).

Scoring is the experiment's query (:func:`lplgrad.query.query`): the strategy measures the
candidates, turns the measures into scores and the b highest are picked
(:func:`lplgrad.strategies.select_top`; ties go to the earlier path). With ``classify``, each
pick also gets the network's class and its probability: from the logits M computed while the
strategy measured (``keep_logits``, :mod:`lplgrad.logits_tap`), or, where the query could not keep
them (a strategy that samples M with dropout, runs it several times per image or not at all), from a
forward pass over the picks (:func:`predict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lplgrad.inference import run_eval
from lplgrad.labeling.data import LabelFolderData
from lplgrad.query import Placement, query
from lplgrad.strategies import QueryStrategy


@dataclass
class Proposal:
    """The chosen images, best first, with their scores (and the network's guess when trained)."""

    indices: Tensor  # (k,) into dm.files
    scores: Tensor  # (k,)
    candidates: int
    predicted: list[str] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)

    def rows(self, files: list[str]) -> list[dict[str, Any]]:
        out = []
        for r, (i, s) in enumerate(zip(self.indices.tolist(), self.scores.tolist()), 1):
            row = {"rank": r, "path": files[i], "score": float(s)}
            if self.predicted:
                row["predicted"], row["confidence"] = self.predicted[r - 1], round(self.confidence[r - 1], 4)
            out.append(row)
        return out


def propose(
    learner: nn.Module,
    dm: LabelFolderData,
    strategy: QueryStrategy,
    k: int,
    round_: int,
    device: torch.device,
    train_steps: int = 0,
    classify: bool = False,
) -> Proposal:
    """Score the candidates with ``strategy`` (M in eval mode) and keep the ``k`` best (all of
    them when there are fewer). ``train_steps``: M's training steps this run; ``classify``: give
    each pick the network's class (a trained network's; see the module docstring)."""
    pool = dm.query_pool()
    result = query(learner, strategy, pool, round_, k, Placement(device), train_steps=train_steps, keep_logits=classify)
    score_of = dict(zip(result.candidates.tolist(), result.scores.tolist()))
    proposal = Proposal(
        result.selected, torch.tensor([score_of[i] for i in result.selected.tolist()]), len(result.candidates)
    )
    if classify and result.logits is not None:
        row = {c: r for r, c in enumerate(result.candidates.tolist())}
        classes_of(torch.softmax(result.logits[[row[i] for i in proposal.indices.tolist()]].float(), 1), dm, proposal)
    elif classify:
        predict(learner, dm, proposal, device)
    return proposal


def predict(learner: nn.Module, dm: LabelFolderData, proposal: Proposal, device: torch.device) -> None:
    """Fill in the trained network's most probable class and its probability for each proposed image."""
    probs = run_eval(
        learner.net,
        dm.pool_dataloader(proposal.indices),
        device,
        lambda x, _: torch.softmax(learner.net(x)[0].float(), 1).cpu(),
    )
    if probs:
        classes_of(torch.cat(probs), dm, proposal)


def classes_of(probs: Tensor, dm: LabelFolderData, proposal: Proposal) -> None:
    """The proposal's classes and their probabilities from the picks' class probabilities
    (k, classes), in the proposal's order."""
    conf, idx = probs[:, : len(dm.classes)].max(1)
    proposal.predicted = [dm.classes[i] for i in idx.tolist()]
    proposal.confidence = conf.tolist()
