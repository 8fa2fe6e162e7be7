"""T stochastic forward passes with dropout active: the class probabilities under MC dropout.

Two paths, chosen by where the network's dropout is (docs/method.md §8):

- dropout only before the classifier (``model.head_dropout``): the backbone runs once per image
  in eval mode, and only the classifier T times, on T masked copies of its input;
- dropout inside the backbone (any ``nn.Dropout*`` layer of M): the T copies of a chunk run in one
  forward, stacked as (T * B, ...), each copy with its own consistent masks.

Either way pass t uses the same masks for every image of the query
(:func:`lplgrad.nets.dropout.consistent_dropout`), so the T passes are T networks, as BatchBALD's
joint entropies need.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.nets.dropout import consistent_dropout, consistent_masks, dropout_layers, head_rate
from lplgrad.split import mix_seed
from lplgrad.strategies.base import Learner
from lplgrad.strategies.embedding import probabilities_and_penultimate

#: the most rows (T copies x images) one backbone forward of the full path takes, by device type:
#: on a CPU small forwards stay in cache (benchmarks/bald_speed.py: 128 rows ran as fast as T plain
#: passes of 256 images, 2,048 rows 1.6x slower); a GPU wants large ones
MAX_ROWS = {"cpu": 128, "cuda": 4096}


def query_seed(learner: Learner, seed: int) -> int:
    """The masks' seed: the strategy's ``seed`` and the round the learner is in."""
    return mix_seed(seed, int(getattr(learner, "round_index", 0)), 9)


def _head_only(learner: Learner, x: Tensor, samples: int, seed: int) -> Tensor:
    """Backbone once, classifier T times. x: (B, ...) -> log-probabilities (B, T, C)"""
    head = learner.net.head
    _, h = probabilities_and_penultimate(
        learner, x
    )  # (B, D), the classifier's input (head dropout is off in eval mode)
    masks = consistent_masks((h.shape[1],), head_rate(learner), samples, mix_seed(seed, 1_000), h.device)
    masked = (masks[:, None, :].to(h.dtype) * h[None]).reshape(samples * h.shape[0], -1)  # (T * B, D)
    logits = torch.nn.functional.linear(masked, head.weight, head.bias)
    return logits.reshape(samples, h.shape[0], -1).float().log_softmax(-1).transpose(0, 1)  # (B, T, C)


def _full(learner: Learner, x: Tensor, samples: int, seed: int) -> Tensor:
    """T copies of each chunk in one forward. x: (B, ...) -> log-probabilities (B, T, C)"""
    per = max(1, MAX_ROWS.get(x.device.type, 1024) // samples)
    out = []
    with consistent_dropout(learner.net, samples, seed, head_rate(learner)):
        for chunk in x.split(per):
            stacked = chunk.unsqueeze(0).expand(samples, *chunk.shape).reshape(-1, *chunk.shape[1:])  # (T * b, ...)
            logits = learner.net(stacked)[0].float()  # (T * b, C)
            out.append(logits.reshape(samples, len(chunk), -1).log_softmax(-1).transpose(0, 1))  # (b, T, C)
    return torch.cat(out)


def mc_log_probs(learner: Learner, x: Tensor, samples: int, seed: int) -> Tensor:
    """log p(y | x, w_t) for T = ``samples`` dropout networks w_t. x: (B, ...) -> (B, T, C)"""
    with torch.no_grad():
        if dropout_layers(learner.net):
            return _full(learner, x, samples, seed)
        return _head_only(learner, x, samples, seed)
