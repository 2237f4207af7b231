import math

import pytest
import torch

from vae.metrics import digit_metrics, kl_divergence, mse_per_image, psnr_from_mse, reconstruction_nll, vae_loss


def test_kl_is_zero_for_the_prior():
    mu, logvar = torch.zeros(4, 7), torch.zeros(4, 7)
    assert torch.allclose(kl_divergence(mu, logvar), torch.zeros(4))


def test_kl_closed_form_and_sum_over_latent_dims():
    # KL(N(1, 1) || N(0, 1)) = 1/2 per dimension; KL(N(0, e^2)||N(0,1)) = (e^2 - 1 - 2) / 2
    assert torch.allclose(kl_divergence(torch.ones(2, 5), torch.zeros(2, 5)), torch.full((2,), 2.5))
    logvar = torch.full((1, 3), 2.0)
    assert math.isclose(kl_divergence(torch.zeros(1, 3), logvar).item(), 3 * 0.5 * (math.exp(2) - 1 - 2), rel_tol=1e-6)
    # summed, not averaged: doubling the latent size doubles the KL, so beta keeps its meaning
    small = kl_divergence(torch.ones(1, 5), torch.zeros(1, 5))
    large = kl_divergence(torch.ones(1, 10), torch.zeros(1, 10))
    assert torch.allclose(large, 2 * small)


def test_reconstruction_nll_is_bce_summed_over_pixels():
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    logits = torch.zeros_like(x)  # p = 0.5 everywhere: -log(0.5) per pixel
    assert math.isclose(reconstruction_nll(logits, x).item(), 4 * math.log(2), rel_tol=1e-6)


def test_vae_loss_is_the_batch_mean_of_nll_plus_beta_kl_in_closed_form():
    # logits 0: p = 0.5, so every pixel costs log 2 whatever its value; 784 pixels per image.
    # KL per image: 0 for mu = 0, and 4 x 2^2 / 2 = 8 for mu = 2 in 4 dimensions (logvar 0).
    x = torch.rand(2, 1, 28, 28)
    mu = torch.stack([torch.zeros(4), torch.full((4,), 2.0)])
    loss = vae_loss(torch.zeros(2, 1, 28, 28), x, mu, torch.zeros(2, 4), 0.25)
    assert loss.item() == pytest.approx(784 * math.log(2) + 0.25 * (0 + 8) / 2, rel=1e-6)
    assert vae_loss(torch.zeros(2, 1, 28, 28), x, mu, torch.zeros(2, 4), 0.0).item() == pytest.approx(
        784 * math.log(2), rel=1e-6
    )


def test_psnr_of_known_mse_and_perfect_reconstruction():
    assert torch.allclose(psnr_from_mse(torch.tensor([0.01, 0.001])), torch.tensor([20.0, 30.0]))
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(mse_per_image(x, x), torch.zeros(2))
    perfect = psnr_from_mse(mse_per_image(x, x))
    assert torch.isfinite(perfect).all() and torch.equal(perfect, torch.full((2,), 100.0))  # capped, never +inf
    labels = torch.arange(2)
    metrics = digit_metrics(x, x, labels)
    assert all(v == 100.0 for v in metrics["psnr_by_digit"][:2])


def test_per_digit_metrics_weigh_each_digit_equally():
    # digit 0: nine images with MSE 0.01; digit 1..9: one image each with MSE 0.0001
    labels = torch.tensor([0] * 9 + list(range(1, 10)))
    x = torch.zeros(len(labels), 1, 28, 28)
    x_hat = torch.where(labels.view(-1, 1, 1, 1) == 0, torch.tensor(0.1), torch.tensor(0.01)).expand_as(x)
    result = digit_metrics(x_hat, x, labels)
    assert result["mse_by_digit"][0] == pytest.approx(0.01)
    assert result["psnr_by_digit"][0] == pytest.approx(20.0)
    assert result["psnr_by_digit"][5] == pytest.approx(40.0)
    assert result["mse_mean"] == pytest.approx((0.01 + 9 * 0.0001) / 10)
    assert result["psnr_mean"] == pytest.approx((20 + 9 * 40) / 10)


def test_per_digit_psnr_is_mean_of_image_psnrs_not_psnr_of_mean_mse():
    labels = torch.tensor([3, 3])
    x = torch.zeros(2, 1, 28, 28)
    x_hat = torch.stack([torch.full((1, 28, 28), 0.1), torch.full((1, 28, 28), 0.01)])
    result = digit_metrics(x_hat, x, labels)
    assert result["psnr_by_digit"][3] == pytest.approx(30.0)  # (20 + 40) / 2
    assert math.isnan(result["psnr_by_digit"][0])  # no image of that digit
