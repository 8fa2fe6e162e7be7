"""VAAL's networks and training iteration on tiny images: shapes, the losses by hand, and a
discriminator that learns which images are labeled, so that the score ranks the others first."""

import itertools

import pytest
import torch

from lplgrad.nets.vaal import VAE, Discriminator, init_like_the_authors
from lplgrad.strategies.vaal_train import VAALSettings, vaal_iteration, vaal_scores, vae_loss


ITERATIONS = 150  # enough for the discriminator to learn; about 0.1 s each on an idle 2-core CPU


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (16, 20)])
def test_the_vae_reconstructs_at_the_image_size(size):
    vae = VAE(1, size, latent=8, width=4)
    x = torch.randn(3, 1, *size)
    recon, z, mu, logvar = vae(x, torch.zeros(3, 8))
    assert recon.shape == x.shape and z.shape == mu.shape == logvar.shape == (3, 8)
    assert torch.equal(z, mu)  # zero noise: z is the mean


def test_the_authors_widths_at_32_pixels():
    vae = VAE(3, (32, 32))
    assert [m.out_channels for m in vae.encoder if isinstance(m, torch.nn.Conv2d)] == [128, 256, 512, 1024]
    assert vae.fc_mu.in_features == 1024 * 2 * 2 and vae.fc_dec.out_features == 1024 * 4 * 4


def test_vae_loss_by_hand():
    x, recon = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    mu, logvar = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2, 2)
    # MSE 1; KL = 0.5 * sum(mu^2) = 0.5
    assert float(vae_loss(x, recon, mu, logvar, beta=2.0)) == pytest.approx(1.0 + 2.0 * 0.5)


def test_the_discriminator_learns_the_labeled_images_and_the_score_prefers_the_others():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    bright = torch.rand(64, 1, 16, 16, generator=g) * 0.2 + 0.8  # the labeled kind
    dark = torch.rand(64, 1, 16, 16, generator=g) * 0.2  # only in the unlabeled pool
    unlabeled = torch.cat([bright[32:], dark])  # half like the labeled ones, half not
    s = VAALSettings(latent=8, batch_size=16)
    vae, disc = VAE(1, (16, 16), s.latent, width=4), Discriminator(s.latent, hidden=32)
    init_like_the_authors(vae), init_like_the_authors(disc)
    opt_v, opt_d = torch.optim.Adam(vae.parameters(), s.lr), torch.optim.Adam(disc.parameters(), s.lr)

    def pairs():
        for i in itertools.count():
            lab = bright[:32][torch.randperm(32, generator=g)[:16]]
            unl = unlabeled[torch.randperm(96, generator=g)[:16]]
            yield lab, unl

    batches = pairs()
    for _ in range(ITERATIONS):
        vaal_iteration(vae, disc, opt_v, opt_d, batches, s, g)
    vae.eval(), disc.eval()
    scores = vaal_scores(vae, disc, unlabeled)  # (96,)
    top = torch.topk(scores, 32).indices
    assert (top >= 32).float().mean() > 0.9  # the dark images, unlike anything labeled, first
