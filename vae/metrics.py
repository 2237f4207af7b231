"""The loss and the metrics: pure tensor functions with explicit reductions.

Loss (negative ELBO, per image, averaged over the batch):
    loss = BCE(x, x̂) summed over the pixels + beta * KL(q(z|x) || N(0, I)) summed over latent dims.
Summing the KL over latent dimensions (not averaging) keeps beta's meaning independent of
the latent size: beta = 1 is the ELBO whatever the size.

Metrics (pixels in [0, 1]): per image MSE = mean((x̂ - x)^2) over its pixels,
PSNR = 10 log10(1 / max(MSE, 1e-10)), so a perfect reconstruction scores 100 dB, not +inf. Per digit:
the mean over that digit's images of each.
`mse_mean` / `psnr_mean`: the mean of the ten per-digit values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vae.config import N_CLASSES


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent dims: (N, D) -> (N,)."""
    return 0.5 * torch.sum(mu.pow(2) + logvar.exp() - 1.0 - logvar, dim=1)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood per sample, summed over pixels: (N, ...) -> (N,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def vae_loss(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float
) -> torch.Tensor:
    """Batch mean of the per-image negative (beta-)ELBO, a scalar."""
    return (reconstruction_nll(logits, x) + beta * kl_divergence(mu, logvar)).mean()


def mse_per_image(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error over each image's pixels: (N, ...) -> (N,)."""
    return (x_hat - x).pow(2).flatten(1).mean(dim=1)


MIN_MSE = 1e-10  # PSNR is capped at 100 dB: an exact reconstruction must not send +inf to ASHA, Optuna or a CSV


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for a peak of 1: 10 log10(1 / MSE), with MSE floored at `MIN_MSE` (so at most 100 dB)."""
    return 10.0 * torch.log10(1.0 / mse.clamp_min(MIN_MSE))


def per_digit_means(values: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Mean of `values` (N,) over each digit's images; NaN for a digit with no image."""
    sums = torch.zeros(N_CLASSES, dtype=torch.float64).index_add_(0, labels, values.double())
    counts = torch.bincount(labels, minlength=N_CLASSES).double()
    return (sums / counts).tolist()


def digit_metrics(x_hat: torch.Tensor, x: torch.Tensor, labels: torch.Tensor) -> dict[str, object]:
    """Per-digit MSE and PSNR and their unweighted means over the ten digits."""
    return digit_metrics_from_mse(mse_per_image(x_hat, x), labels)


def digit_metrics_from_mse(mse: torch.Tensor, labels: torch.Tensor) -> dict[str, object]:
    """`digit_metrics` from each image's MSE (N,), so callers can work batch by batch."""
    mse_by_digit = per_digit_means(mse, labels)
    psnr_by_digit = per_digit_means(psnr_from_mse(mse), labels)
    return {
        "mse_by_digit": mse_by_digit,
        "psnr_by_digit": psnr_by_digit,
        "mse_mean": sum(mse_by_digit) / N_CLASSES,
        "psnr_mean": sum(psnr_by_digit) / N_CLASSES,
    }


# A latent dimension is active when the variance over the data of its posterior mean exceeds
# this (Burda, Grosse and Salakhutdinov, 2015, "Importance Weighted Autoencoders", and the
# threshold of the authors' code).
ACTIVE_THRESHOLD = 0.01


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z_j|x) || N(0, 1)) of each latent dimension j, per sample: (N, D) -> (N, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def active_units(mu_variance: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """How many dimensions have Var_x(E_q[z_j|x]) above `threshold`: (D,) -> int."""
    return int((mu_variance > threshold).sum())


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


def iw_nll_from_log_weights(log_weights: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound on −log p(x) from log w_i = log p(x, z_i) − log q(z_i|x) of
    k draws per image: −log((1/k) Σ_i w_i), (N, k) -> (N,). For k = 1 it is the single-draw
    negative ELBO; it cannot rise, in expectation, as k grows (Burda et al., 2015)."""
    return -(torch.logsumexp(log_weights, dim=1) - math.log(log_weights.shape[1]))
