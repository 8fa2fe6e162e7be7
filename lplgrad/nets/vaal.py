"""VAAL's two networks (Sinha, Ebrahimi and Darrell, ICCV 2019): a beta-VAE over the images and a
discriminator over its latent means, sized as in the authors' code for 32 x 32 images and
adapted here to any image size (docs/method.md §8).

- encoder: four 4x4 stride-2 convolutions (width, 2, 4, 8 x width channels; BatchNorm, ReLU),
  then two linear layers to the latent mean and log-variance (``latent`` = 32);
- decoder: a linear layer to (8 x width, ceil(H/8), ceil(W/8)), three 4x4 stride-2 transposed
  convolutions (BatchNorm, ReLU), cropped to H x W, and a 1x1 convolution to the image channels;
- discriminator: five linear layers (512 hidden, ReLU) to one logit: labeled (1) or not (0).

The authors' width is 128 (128 ... 1,024 channels); ``width`` scales it for small images or CPUs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class VAE(nn.Module):
    """x (B, C, H, W) -> (reconstruction (B, C, H, W), z, mu, logvar (B, latent) each)."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], latent: int = 32, width: int = 128) -> None:
        super().__init__()
        # images smaller than 16 pixels are resized up to 16: four stride-2 stages need that much
        image_size = (max(16, image_size[0]), max(16, image_size[1]))
        w = [width, 2 * width, 4 * width, 8 * width]
        layers, c = [], in_channels
        for out in w:
            layers += _block(nn.Conv2d(c, out, 4, 2, 1, bias=False), out)
            c = out
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.encoder.eval()(torch.zeros(1, in_channels, *image_size)).shape[1]
        self.encoder.train()
        self.fc_mu, self.fc_logvar = nn.Linear(flat, latent), nn.Linear(flat, latent)
        self.image_size = tuple(image_size)
        self.start = (math.ceil(image_size[0] / 8), math.ceil(image_size[1] / 8))
        self.fc_dec = nn.Linear(latent, w[3] * self.start[0] * self.start[1])
        up = []
        for a, b in ((w[3], w[2]), (w[2], w[1]), (w[1], w[0])):
            up += _block(nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), b)
        self.decoder = nn.Sequential(*up)
        self.to_image = nn.Conv2d(w[0], in_channels, 1)
        self.top = w[3]

    def prepare(self, x: Tensor) -> Tensor:
        """The images at the size the VAE works at (resized up when smaller than 16 pixels)."""
        if tuple(x.shape[-2:]) == self.image_size:
            return x
        return nn.functional.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(self.prepare(x))  # (B, flat)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        h = self.fc_dec(z).reshape(len(z), self.top, *self.start)  # (B, 8w, H/8, W/8)
        h = self.decoder(h)[..., : self.image_size[0], : self.image_size[1]]  # (B, w, H, W)
        return self.to_image(h)

    def forward(self, x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``noise``: the reparameterisation's standard normal draws (B, latent), given by the
        caller so that its generator decides them. The reconstruction is of :meth:`prepare`'s images."""
        mu, logvar = self.encode(x)
        z = mu + noise * (0.5 * logvar).exp()
        return self.decode(z), z, mu, logvar


class Discriminator(nn.Module):
    """Latent means (B, latent) -> logits (B,): labeled (high) or unlabeled (low)."""

    def __init__(self, latent: int = 32, hidden: int = 512) -> None:
        super().__init__()
        layers, d = [], latent
        for _ in range(4):
            layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
            d = hidden
        self.net = nn.Sequential(*layers, nn.Linear(d, 1))

    def forward(self, mu: Tensor) -> Tensor:
        return self.net(mu).squeeze(1)


def init_like_the_authors(module: nn.Module) -> None:
    """Kaiming-normal weights and zero biases for linear and convolutional layers, BatchNorm at (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
