"""VAAL (Sinha, Ebrahimi and Darrell, ICCV 2019): a VAE and a discriminator trained adversarially
on the labeled and unlabeled images; the images the discriminator finds least like the labeled
ones are labeled first (docs/method.md §8).

As in the authors' code, both networks start afresh every round and train for as many
iterations as the task model M made steps that round (one VAAL iteration per step), on batches
of the labeled set and of the whole unlabeled pool, the images without augmentation. They never
see M. The query trains them on one process, seeded by the round (so a resumed run trains them
again identically), and every process measures with rank 0's networks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from lplgrad.errors import ConfigError
from lplgrad.nets.vaal import VAE, Discriminator, init_like_the_authors
from lplgrad.split import mix_seed
from lplgrad.strategies.base import FitData, Learner, QueryStrategy
from lplgrad.strategies.vaal_train import VAALSettings, vaal_iteration, vaal_scores


def _images(data: FitData, indices: Tensor) -> Tensor:
    """The images at pool ``indices`` (the evaluation transform) on the fit's device. -> (n, C, H, W)"""
    return torch.cat([batch[0] for batch in data.loader_for(indices, True)]).to(data.device)


def _batches(data: FitData, batch_size: int, g: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless (labeled, unlabeled) batches drawn with ``g``: each set visited in a random order,
    epoch after epoch, as the authors' cycling loaders do."""

    def cycle(indices: Tensor) -> Iterator[Tensor]:
        while True:
            order = indices[torch.randperm(len(indices), generator=g)]
            for s in range(0, len(order), batch_size):
                yield order[s : s + batch_size]

    lab, unlab = cycle(data.labeled), cycle(data.unlabeled)
    while True:
        yield _images(data, next(lab)), _images(data, next(unlab))


class VAAL(QueryStrategy):
    """Lowest discriminator output on the VAE's latent mean first.

    Args:
        width: the VAE's first convolution's channels (the authors' 128; 128 ... 1,024 over the four
            stages). A smaller one trains in reach of a CPU; the runs record it.
        latent, beta, adversary, vae_steps, adv_steps, lr, batch_size: the paper's defaults (32, 1,
            1, 2, 1, Adam at 5e-4, 128).
        iterations: VAAL iterations a round (None: as many as M's training steps that round).
    """

    trains = True
    reads_raw_images = True  # the VAE reads the images: no feature cache

    def __init__(
        self,
        width: int = 128,
        latent: int = 32,
        beta: float = 1.0,
        adversary: float = 1.0,
        vae_steps: int = 2,
        adv_steps: int = 1,
        lr: float = 5e-4,
        batch_size: int = 128,
        iterations: int | None = None,
    ) -> None:
        if min(width, latent, vae_steps, adv_steps, batch_size) < 1 or (iterations is not None and iterations < 1):
            raise ConfigError(
                "strategy width, latent, vae_steps, adv_steps, batch_size and iterations must be positive"
            )
        self.width, self.iterations = width, iterations
        self.settings = VAALSettings(beta, adversary, vae_steps, adv_steps, lr, batch_size, latent)
        self._nets: tuple[VAE, Discriminator] | None = None

    def _build(self, shape: tuple[int, ...], seed: int | None = None) -> tuple[VAE, Discriminator]:
        with torch.random.fork_rng(devices=[]):  # the run's own random stream is left as it was
            if seed is not None:
                torch.manual_seed(seed)
            vae = VAE(shape[0], tuple(shape[1:]), self.settings.latent, self.width)
            disc = Discriminator(self.settings.latent)
            init_like_the_authors(vae), init_like_the_authors(disc)
        return vae, disc

    def fit(self, learner: Learner, data: FitData, generator: torch.Generator) -> dict[str, Any]:
        s = self.settings
        batches = _batches(data, s.batch_size, generator)
        first = next(batches)
        vae, disc = (
            m.to(data.device)
            for m in self._build(tuple(first[0].shape[1:]), mix_seed(int(generator.initial_seed()), 7))
        )
        opt_v, opt_d = torch.optim.Adam(vae.parameters(), lr=s.lr), torch.optim.Adam(disc.parameters(), lr=s.lr)
        steps = self.iterations or max(1, data.train_steps)

        def pairs() -> Iterator[tuple[Tensor, Tensor]]:
            yield first
            yield from batches

        stream = pairs()
        with torch.enable_grad():
            for _ in range(steps):
                vaal_iteration(vae, disc, opt_v, opt_d, stream, s, generator)
        return {"shape": tuple(first[0].shape[1:]), "vae": vae.state_dict(), "disc": disc.state_dict()}

    def load_fitted(self, state: dict[str, Any], device: torch.device) -> None:
        vae, disc = self._build(state["shape"])
        vae.load_state_dict(state["vae"]), disc.load_state_dict(state["disc"])
        self._nets = (vae.to(device).eval(), disc.to(device).eval())

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        if self._nets is None:
            raise RuntimeError("VAAL measures with the networks of this round's fit: the query fits them first")
        return vaal_scores(*self._nets, x)  # (B,)

    def __repr__(self) -> str:
        return f"VAAL(width={self.width}, iterations={self.iterations}, {self.settings})"
