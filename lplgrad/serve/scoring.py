"""Every open task scored after a training: the strategy's order, and the network's class of each.

The order is the labelling app's query (:func:`lplgrad.labeling.propose.propose`) over every
unlabelled image, with ``classify`` when the network was trained: the classes then come from the
logits M computed while the strategy measured (:mod:`lplgrad.logits_tap`), or from a forward pass
where the strategy's passes cannot give them. :func:`rank_scores` turns the order into the
prediction scores Label Studio sorts by.
"""

from __future__ import annotations


def rank_scores(order: list[int], predicted: list[str | None]) -> dict[int, tuple[str | None, float]]:
    """Scores for the Data Manager: the strategy's k-th pick of n gets k / n, so that ascending
    "Prediction score" shows the most informative task first (and all scores are in (0, 1])."""
    n = len(order)
    return {task: (label, (k + 1) / n) for k, (task, label) in enumerate(zip(order, predicted))}
