"""BatchBALD's greedy batch (Kirsch, van Amersfoort and Gal, NeurIPS 2019, Algorithm 1).

The batch A grows one candidate at a time, each time the x maximising
I(y_A, y_x; w) = H(y_A, y_x) - sum_{i in A + x} mean_t H(y_i | w_t); the sum over A is the same for
every x, so the pick maximises H(y_A, y_x) - mean_t H(y_x | w_t). The joint entropy comes from
the T dropout networks: p(y_A, y_x) = mean_t p(y_A | w_t) p(y_x | w_t).

The batch's label configurations are kept as a matrix P (K, T) = p(config_k | w_t):
- *exact* while the C^n configurations of an n-point batch are at most m: every one is a row;
- *sampled* after (§3.3): m configurations drawn from p(y_A) (pass t_j uniform, then each label
  from p(y_i | w_{t_j})), and H(y_A, y_x) ~ -1/m sum_j sum_c p(y_x=c | y_A^j) log p(y_A^j, y_x=c).

Rows are kept in log space, scaled by their maximum, so that long batches do not underflow.
Memory: P (m, T), and the candidates' joint probabilities a chunk at a time, never (N, m, C) at
once.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: the most values (candidates x configurations x classes) in one chunk of joint probabilities
CHUNK_VALUES = 1 << 22


class Configurations:
    """The label configurations of the batch so far and p(config | w_t), in log space."""

    def __init__(self, samples: int, budget: int, device: torch.device) -> None:
        self.budget, self.device = budget, device
        self.log_p = torch.zeros(1, samples, dtype=torch.float64, device=device)  # (K, T): the empty batch
        self.exact = True
        self.chosen: list[Tensor] = []  # probs (T, C) of each point added, for the switch to sampling
        self.labels: Tensor | None = None  # (m, n) sampled labels, once sampled
        self.passes: Tensor | None = None  # (m,) the pass t_j each sampled configuration came from

    def add(self, probs: Tensor, generator: torch.Generator) -> None:
        """Add a point with probabilities p(y | w_t) (T, C) to the batch."""
        self.chosen.append(probs)
        k, c = self.log_p.shape[0], probs.shape[1]
        if self.exact and k * c <= self.budget:  # every (config, label) pair: (K * C, T)
            self.log_p = (self.log_p[:, None, :] + probs.T.double().log()[None]).reshape(k * c, -1)
        elif self.exact:
            self._sample(generator)
        else:
            self._extend(probs, generator)

    def _draw(self, probs: Tensor, generator: torch.Generator) -> Tensor:
        """Labels y_j ~ p(y | w_{t_j}) for every sampled configuration. -> (m,)"""
        rows = probs[self.passes.to(probs.device)].float().cpu()  # (m, C)
        return torch.multinomial(rows, 1, generator=generator).flatten()

    def _sample(self, generator: torch.Generator) -> None:
        """Switch to m sampled configurations of every point chosen so far."""
        t = self.chosen[0].shape[0]
        self.passes = torch.randint(0, t, (self.budget,), generator=generator)
        self.labels = torch.stack([self._draw(p, generator) for p in self.chosen], 1)  # (m, n)
        self.log_p = torch.zeros(self.budget, t, dtype=torch.float64, device=self.device)
        for i, p in enumerate(self.chosen):
            self.log_p += p.double().log().T[self.labels[:, i].to(self.device)]  # (m, T)
        self.exact = False

    def _extend(self, probs: Tensor, generator: torch.Generator) -> None:
        y = self._draw(probs, generator)
        self.labels = torch.cat([self.labels, y[:, None]], 1)
        self.log_p = self.log_p + probs.double().log().T[y.to(self.device)]  # (m, T)

    def joint_entropy(self, probs: Tensor) -> Tensor:
        """H(y_A, y_x) for every candidate x, in ``probs``' dtype. probs (N, T, C) -> (N,)

        With the rows scaled, p = P / e^s (K, T), joint = p @ probs / T and p_A = mean_t p; as
        sum_c joint = p_A, both estimators are -sum_k w_k [sum_c joint log joint + s_k p_A,k], with
        w_k = e^{s_k} (exact) or 1 / (m p_A,k) (sampled): one (N, K) matrix-vector product after
        the element-wise x log x, the whole cost.
        """
        scale = self.log_p.max(1).values  # (K,)
        p = (self.log_p - scale[:, None]).exp()  # (K, T), each row's largest is 1
        p_a = p.mean(1)  # (K,)
        w = scale.exp() if self.exact else 1.0 / (p_a * p.shape[0])  # (K,)
        const = float((w * scale * p_a).sum())
        n, t, c = probs.shape
        k = p.shape[0]
        pt, wt = p.to(probs.dtype), w.to(probs.dtype)
        out = torch.empty(n, dtype=probs.dtype, device=probs.device)
        tiny = torch.finfo(probs.dtype).tiny
        step = max(1, CHUNK_VALUES // (k * c))
        for s in range(0, n, step):
            chunk = probs[s : s + step]  # (n', T, C)
            joint = pt @ chunk.permute(1, 0, 2).reshape(t, -1) / t  # (K, n' * C)
            out[s : s + step] = -(wt @ (joint * joint.clamp_min(tiny).log())).reshape(len(chunk), c).sum(1) - const
        return out


def conditional_entropy(probs: Tensor) -> Tensor:
    """mean_t H(y | w_t) of every candidate. (N, T, C) -> (N,)"""
    return -(probs * probs.clamp_min(1e-300).log()).sum(-1).mean(-1)


def batchbald_picks(probs: Tensor, k: int, configurations: int, generator: torch.Generator) -> Tensor:
    """BatchBALD's greedy batch of ``k`` candidates. probs (N, T, C) -> (min(k, N),) in pick order.

    The joint entropies are computed in ``probs``' dtype (the strategy passes float32: about 1e-6
    relative error, and several times faster than float64 on a CPU); the configurations are float64."""
    n = probs.shape[0]
    cond = conditional_entropy(probs)  # (N,)
    state = Configurations(probs.shape[1], configurations, probs.device)
    taken = torch.zeros(n, dtype=torch.bool, device=probs.device)
    picks = []
    for _ in range(min(k, n)):
        gain = (state.joint_entropy(probs) - cond).masked_fill(taken, -float("inf"))
        j = int(torch.argmax(gain))
        picks.append(j)
        taken[j] = True
        state.add(probs[j], generator)
    return torch.tensor(picks, dtype=torch.long)
