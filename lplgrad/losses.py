"""Pure tensor functions of the method: the ranking loss (docs/method.md §2) and the entropy (§3)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def loss_prediction_loss(pred_loss: Tensor, target_loss: Tensor, margin: float = 1.0) -> Tensor:
    """Pairwise margin ranking loss of Yoo & Kweon, as the LPLgrad authors' code computes it.

    Sample i is paired with sample n-1-i (the batch against its reverse) for i < n // 2;
    ``d = l_i - l_j`` is detached, ``one = +1 if d > 0 else -1`` (ties give -1), and the loss is
    ``mean(max(0, margin - one * (l_hat_i - l_hat_j)))`` over the pairs. An odd batch leaves its
    middle sample unpaired; a batch of one has no pair and gives a zero loss that keeps the graph.

    pred_loss, target_loss: (n,)
    """
    n = pred_loss.shape[0]
    half = n // 2
    if half == 0:
        return pred_loss.sum() * 0.0
    d_hat = (pred_loss - pred_loss.flip(0))[:half]  # (n//2,)
    d = (target_loss - target_loss.flip(0))[:half].detach()  # (n//2,)
    one = torch.where(d > 0, 1.0, -1.0).to(pred_loss.dtype)
    return torch.clamp(margin - one * d_hat, min=0).mean()


def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy ``H = -sum_c p_c log p_c`` of softmax(logits), per row (paper Eq. 6).

    logits: (B, C) -> (B,)
    """
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def margin_uncertainty(logits: Tensor) -> Tensor:
    """Negative gap between the two most probable classes (higher = less sure). (B, C) -> (B,)"""
    top2 = F.softmax(logits, dim=1).topk(2, dim=1).values  # (B, 2)
    return top2[:, 1] - top2[:, 0]


def least_confidence(logits: Tensor) -> Tensor:
    """One minus the largest class probability. (B, C) -> (B,)"""
    return 1.0 - F.softmax(logits, dim=1).max(dim=1).values


def waal_score(logits: Tensor, critic: Tensor, selection: float = 10.0) -> Tensor:
    """WAAL's query score, higher = label first (Shui et al., AISTATS 2020; the authors' code):
    ``selection * D(z) - (||log p||_2 + sum_c -log p_c) / 2``. The second term is smallest for a
    uniform prediction, so uncertain images score high; D(z), the critic's value in (0, 1), is
    high for images unlike the labeled ones. The authors sort the negation in ascending order.

    logits (B, C), critic (B,) -> (B,)
    """
    logp = F.log_softmax(logits.float(), dim=1)
    uncertainty = 0.5 * logp.norm(2, dim=1) + 0.5 * (-logp).sum(dim=1)
    return selection * critic.float() - uncertainty
