"""A convolutional VAE for 28x28 single-channel images.

Encoder: two stride-2 convolutions (28 -> 14 -> 7), a hidden layer, then mu and log-variance.
Decoder: the mirror image, ending in logits; `decode` applies the sigmoid so images are in
[0, 1]. The latent size and the widths are constructor arguments.
"""

from __future__ import annotations

import torch
from torch import nn

from vae.config import ModelConfig
from vae.data import IMAGE_SHAPE


class ConvVAE(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        side = IMAGE_SHAPE[1] // 4  # two stride-2 convolutions
        self._feature_shape = (c2, side, side)
        features = c2 * side * side
        self.encoder = nn.Sequential(
            nn.Conv2d(IMAGE_SHAPE[0], c1, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(features, config.hidden_dim),
            nn.ReLU(),
        )
        self.to_mu = nn.Linear(config.hidden_dim, config.latent_dim)
        self.to_logvar = nn.Linear(config.hidden_dim, config.latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, features),
            nn.ReLU(),
            nn.Unflatten(1, self._feature_shape),
            nn.ConvTranspose2d(c2, c1, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c1, IMAGE_SHAPE[0], kernel_size=4, stride=2, padding=1),
        )

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, 28, 28) in [0, 1] -> (mu, logvar), each (N, latent_dim)."""
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) -> logits (N, 1, 28, 28)."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) -> images (N, 1, 28, 28) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised draw z = mu + sigma * eps."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (logits of the reconstruction from a sampled z, mu, logvar)."""
        mu, logvar = self.encode(x)
        return self.decode_logits(self.sample(mu, logvar)), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [0, 1] -> reconstruction from the posterior mean, in [0, 1]."""
        mu, _ = self.encode(x)
        return self.decode(mu)
