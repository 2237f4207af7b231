"""Latent codes and reconstructions of a trained model (the only place analysis uses vae)."""

from __future__ import annotations

import numpy as np
import torch

from vae.data import Split, to_unit
from vae.model import ConvVAE


@torch.no_grad()
def latent_means(model: ConvVAE, pixels: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Posterior means μ of uint8 `pixels` (N, 1, 28, 28): (N, latent_dim)."""
    model.eval()
    return torch.cat(
        [model.encode(to_unit(pixels[i : i + batch_size]))[0] for i in range(0, len(pixels), batch_size)]
    ).numpy()


def tsne_embedding(codes: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """scikit-learn's t-SNE of latent codes to 2-D (PCA initialisation, seeded)."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(codes) - 1) / 3)))
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(codes)


def stratified_subset(split: Split, n: int, *, seed: int = 0) -> Split:
    """At most `n` images, the same number per digit where possible (for t-SNE)."""
    if len(split) <= n:
        return split
    rng = np.random.default_rng(seed)
    labels = split.labels.numpy()
    per_digit = max(1, n // 10)
    index = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == d))[:per_digit] for d in range(10)]))
    return Split(split.pixels[index], split.labels[index])


@torch.no_grad()
def reconstruction_examples(model: ConvVAE, split: Split, *, seed: int = 0) -> tuple[np.ndarray, ...]:
    """One example of every digit present: (originals, from the posterior mean, from a sampled z,
    labels); images as (n, 28, 28) arrays in [0, 1]."""
    model.eval()
    labels = split.labels.numpy()
    index = [int(np.flatnonzero(labels == d)[0]) for d in range(10) if (labels == d).any()]
    x = to_unit(split.pixels[index])
    mu, logvar = model.encode(x)
    z = ConvVAE.sample(mu, logvar, torch.Generator().manual_seed(seed))
    as_array = lambda t: t[:, 0].numpy()
    return as_array(x), as_array(model.decode(mu)), as_array(model.decode(z)), labels[index]
