"""Every open task scored after a training: the strategy's order, and the network's class of each.

The order is the labelling app's query (:func:`lplgrad.labeling.propose.propose`) over every
unlabelled image. The classes would take a second pass over the images
(:func:`lplgrad.labeling.propose.predict`: decoding and a forward pass each, a quarter of the
re-scoring's time); instead, while the strategy measures, a forward hook on M keeps the logits M
computes anyway (:class:`LogitsOfMeasure`). They are used only when the hook saw exactly one
row of logits per image measured, in the measured order, from M without dropout; otherwise
(a strategy that runs M several times per image, samples it with dropout, or never runs it)
the second pass gives the classes, as before.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.labeling.propose import Proposal, predict, propose


def rank_scores(order: list[int], predicted: list[str | None]) -> dict[int, tuple[str | None, float]]:
    """Scores for the Data Manager: the strategy's k-th pick of n gets k / n, so that ascending
    "Prediction score" shows the most informative task first (and all scores are in (0, 1])."""
    n = len(order)
    return {task: (label, (k + 1) / n) for k, (task, label) in enumerate(zip(order, predicted))}


def _one_row_each(calls: list[tuple[bool, Tensor]], n: int) -> Tensor | None:
    """The logits of one measured batch of ``n`` images: those of M's forward passes with
    gradients on (a gradient strategy's; its no-gradient probes left out), else of all of them,
    when they add up to one row per image."""
    for chosen in ([t for grad, t in calls if grad], [t for _, t in calls]):
        if chosen and all(t.dim() == 2 for t in chosen) and sum(len(t) for t in chosen) == n:
            return torch.cat(chosen).cpu()
    return None


class LogitsOfMeasure:
    """Within ``with``: the logits M computes while ``strategy.measure`` runs, one tensor per
    measured batch (None for a batch where they are not one row per image)."""

    def __init__(self, net: torch.nn.Module, strategy) -> None:
        self.net, self.strategy = net, strategy
        self.batches: list[Tensor | None] = []

    def __enter__(self) -> LogitsOfMeasure:
        original = self.strategy.measure

        def measure(learner, x):
            calls: list[tuple[bool, Tensor]] = []

            def hook(module, inputs, output):
                logits = output[0] if isinstance(output, (tuple, list)) else output
                if isinstance(logits, Tensor):
                    calls.append((torch.is_grad_enabled(), logits.detach()))

            handle = self.net.register_forward_hook(hook)
            try:
                return original(learner, x)
            finally:
                handle.remove()
                self.batches.append(_one_row_each(calls, len(x)))

        self.strategy.measure = measure  # this instance only, until the end of the block
        return self

    def __exit__(self, *exc) -> None:
        del self.strategy.measure

    def logits(self, rows: int) -> Tensor | None:
        """The logits of every measured image, in the measured order, when there are ``rows``."""
        if self.strategy.requires_dropout or not self.batches or any(b is None for b in self.batches):
            return None
        out = torch.cat(self.batches)
        return out if len(out) == rows else None


def classes_from_logits(logits: Tensor, candidates: Tensor, proposal: Proposal, classes: list[str]) -> None:
    """Fill in the proposal's classes and probabilities (as :func:`predict` does) from the
    logits of the candidates (rows in ``candidates``' order)."""
    row = {int(c): k for k, c in enumerate(candidates.tolist())}
    picked = logits[[row[i] for i in proposal.indices.tolist()]]
    conf, idx = torch.softmax(picked.float(), 1)[:, : len(classes)].max(1)
    proposal.predicted = [classes[i] for i in idx.tolist()]
    proposal.confidence = conf.tolist()


def score_and_classify(learner, dm, strategy, k: int, round_: int, device, steps: int, trained: bool) -> Proposal:
    """The query's ``k`` best of the unlabelled images, best first, with the network's class of
    each when it was trained (see the module docstring)."""
    with LogitsOfMeasure(learner.net, strategy) as caught:
        proposal = propose(learner, dm, strategy, k, round_, device, steps)
    if not trained:
        return proposal
    pool = dm.query_pool()
    candidates = pool.split.candidates(round_, pool.subset_size)
    labelled = len(pool.split) if strategy.uses_labeled else 0
    logits = caught.logits(len(candidates) + labelled) if len(candidates) == proposal.candidates else None
    if logits is None:
        predict(learner, dm, proposal, device)
    else:
        classes_from_logits(logits[: len(candidates)], candidates, proposal, dm.classes)
    return proposal
