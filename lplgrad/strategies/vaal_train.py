"""VAAL's training iteration and score as pure functions of the networks and batches
(Sinha et al., ICCV 2019, §3; the authors' code for the loss scaling).

One iteration: ``vae_steps`` (2) steps of the VAE on a labeled and an unlabeled batch, with loss
beta-VAE(labeled) + beta-VAE(unlabeled) + lambda * BCE(D(mu_l), 1) + lambda * BCE(D(mu_u), 1)
(the VAE tries to make unlabeled latents look labeled), then ``adv_steps`` (1) steps of the
discriminator with BCE(D(mu_l), 1) + BCE(D(mu_u), 0) on detached means. The beta-VAE loss is the
mean squared reconstruction error plus beta times the KL divergence summed over the batch and
the latent dimensions, as the authors' code has it. Adam, lr 5e-4, for both; beta = 1,
lambda = 1. The score of an unlabeled image is minus the discriminator's logit on its mean:
the images most confidently "unlabeled" first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from lplgrad.nets.vaal import VAE, Discriminator


@dataclass(frozen=True)
class VAALSettings:
    """The paper's defaults (the authors' arguments.py and solver.py)."""

    beta: float = 1.0
    adversary: float = 1.0  # lambda_2 in the paper
    vae_steps: int = 2
    adv_steps: int = 1
    lr: float = 5e-4
    batch_size: int = 128
    latent: int = 32


def vae_loss(x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, beta: float) -> Tensor:
    """Mean squared error + beta * KL(q(z|x) || N(0, I)) summed over batch and latent dimensions."""
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return F.mse_loss(recon, x) + beta * kld


def _noise(n: int, latent: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randn(n, latent, generator=generator).to(device)


def vae_step(vae: VAE, disc: Discriminator, opt, lab: Tensor, unlab: Tensor, s: VAALSettings, g) -> float:
    """One step of the VAE; returns its loss."""
    rl, _, mu_l, lv_l = vae(lab, _noise(len(lab), s.latent, g, lab.device))
    ru, _, mu_u, lv_u = vae(unlab, _noise(len(unlab), s.latent, g, unlab.device))
    fool = F.binary_cross_entropy_with_logits(disc(mu_l), torch.ones(len(lab), device=lab.device))
    fool = fool + F.binary_cross_entropy_with_logits(disc(mu_u), torch.ones(len(unlab), device=unlab.device))
    recon_loss = vae_loss(vae.prepare(lab), rl, mu_l, lv_l, s.beta) + vae_loss(
        vae.prepare(unlab), ru, mu_u, lv_u, s.beta
    )
    loss = recon_loss + s.adversary * fool
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def discriminator_step(vae: VAE, disc: Discriminator, opt, lab: Tensor, unlab: Tensor) -> float:
    """One step of the discriminator on the VAE's detached means; returns its loss."""
    with torch.no_grad():
        mu_l, _ = vae.encode(lab)
        mu_u, _ = vae.encode(unlab)
    loss = F.binary_cross_entropy_with_logits(disc(mu_l), torch.ones(len(lab), device=lab.device))
    loss = loss + F.binary_cross_entropy_with_logits(disc(mu_u), torch.zeros(len(unlab), device=unlab.device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def vaal_scores(vae: VAE, disc: Discriminator, x: Tensor) -> Tensor:
    """Minus the discriminator's logit on each image's latent mean, both nets in eval mode. (B, ...) -> (B,)"""
    with torch.no_grad():
        mu, _ = vae.encode(x)
        return -disc(mu).float()


def vaal_iteration(vae, disc, opt_vae, opt_disc, batches, s: VAALSettings, g) -> tuple[float, float]:
    """One VAAL iteration: ``vae_steps`` VAE steps then ``adv_steps`` discriminator steps, each on
    the next (labeled, unlabeled) pair of ``batches`` (an iterator). Returns the last losses."""
    vae.train(), disc.train()
    for _ in range(s.vae_steps):
        lab, unlab = next(batches)
        v = vae_step(vae, disc, opt_vae, lab, unlab, s, g)
    for _ in range(s.adv_steps):
        lab, unlab = next(batches)
        d = discriminator_step(vae, disc, opt_disc, lab, unlab)
    return v, d
