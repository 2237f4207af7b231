"""What the latent space says: active units, KL per dimension, and the importance-weighted bound."""

import math

import pytest
import torch

from vae import ModelConfig, TrainConfig, train
from vae.data import to_unit
from vae.metrics import ACTIVE_THRESHOLD, iw_nll_from_log_weights, kl_divergence, reconstruction_nll
from vae.model import ConvVAE
from vae.training import evaluate, importance_weighted_nll

SMALL = ModelConfig(latent_dim=6, channels=(8, 16), hidden_dim=64)


@pytest.fixture(scope="module")
def trained(sample_splits):
    """A small model after two epochs: its posterior differs from the prior."""
    config = TrainConfig(model=SMALL, epochs=2, batch_size=64, lr=3e-3, seed=1, threads=1)
    return train(config, sample_splits).model


def test_dimensions_the_encoder_ignores_are_inactive_and_the_others_active(sample_splits):
    torch.manual_seed(0)
    model = ConvVAE(SMALL)
    ignored = [1, 4]
    with torch.no_grad():
        model.to_mu.weight.mul_(20.0)  # the used dimensions vary well above the threshold
        model.to_mu.weight[ignored] = 0.0  # by construction, these posterior means never move
        model.to_mu.bias[ignored] = 0.5
    _, metrics = evaluate(model, sample_splits.val, beta=1.0)
    variance = torch.tensor(metrics["mu_var_by_dim"])
    assert metrics["active_units"] == SMALL.latent_dim - len(ignored)
    assert metrics["active_threshold"] == ACTIVE_THRESHOLD == 0.01
    assert variance[ignored].tolist() == [0.0, 0.0]
    assert (variance[[0, 2, 3, 5]] > ACTIVE_THRESHOLD).all()
    # the per-dimension KL sums to the reported KL, which is the closed form over the split
    assert sum(metrics["kl_by_dim"]) == pytest.approx(metrics["kl"], rel=1e-5)
    with torch.no_grad():
        mu, logvar = model.encode(to_unit(sample_splits.val.pixels))
    assert metrics["kl"] == pytest.approx(float(kl_divergence(mu, logvar).mean()), rel=1e-4)


def test_every_epoch_reports_active_units_and_the_kl_of_each_dimension(sample_splits):
    history = train(TrainConfig(model=SMALL, epochs=2, batch_size=64, seed=3, threads=1), sample_splits).history
    for result in history:
        assert 0 <= result.active_units <= SMALL.latent_dim
        assert len(result.kl_by_dim) == len(result.mu_var_by_dim) == SMALL.latent_dim
        assert result.active_units == sum(v > result.active_threshold for v in result.mu_var_by_dim)
    assert "active_units" in history[-1].flat() and "kl_by_dim" not in history[-1].flat()


def test_at_one_sample_nll_iw_is_the_negative_elbo_of_the_same_batch(trained, sample_splits):
    pixels = sample_splits.val.pixels[:64]
    x = to_unit(pixels)
    # the same draw: −log w = −log p(x|z) + log q(z|x) − log p(z), the negative ELBO with its KL
    # estimated from that one z; check the formula against a direct computation
    mu, logvar = trained.encode(x)
    z = ConvVAE.sample(mu, logvar, torch.Generator().manual_seed(11))
    normal = torch.distributions.Normal
    direct = (reconstruction_nll(trained.decode_logits(z), x)
              + normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(1) - normal(0.0, 1.0).log_prob(z).sum(1))
    assert importance_weighted_nll(trained, pixels, k=1, seed=11) == pytest.approx(direct.detach(), rel=1e-5)
    # and in expectation over the draws it is the negative ELBO with the closed-form KL (val_loss)
    draws = torch.stack([importance_weighted_nll(trained, pixels, k=1, seed=s) for s in range(200)])
    with torch.no_grad():
        elbo = torch.stack(
            [
                reconstruction_nll(
                    trained.decode_logits(ConvVAE.sample(mu, logvar, torch.Generator().manual_seed(1000 + s))), x
                )
                for s in range(200)
            ]
        ) + kl_divergence(mu, logvar)
    difference = draws.mean(0) - elbo.mean(0)  # per image, over 200 draws each
    se = math.sqrt(float((draws.var(0) + elbo.var(0)).mean()) / 200 / len(pixels))
    assert abs(float(difference.mean())) < 4 * se


def test_more_importance_samples_never_raise_the_bound_on_average(trained, sample_splits):
    pixels = sample_splits.val.pixels[:200]
    one, sixteen, many = (importance_weighted_nll(trained, pixels, k=k, seed=5) for k in (1, 16, 64))
    gain = one - sixteen
    assert float(gain.mean()) > 4 * float(gain.std() / math.sqrt(len(gain)))  # tighter, beyond noise
    assert float(many.mean()) <= float(sixteen.mean()) + 0.05
    assert torch.equal(importance_weighted_nll(trained, pixels, k=16, seed=5), sixteen)  # repeatable


def test_the_bound_averages_the_weights_not_their_logs():
    log_w = torch.tensor([[0.0, math.log(3.0)]])  # weights 1 and 3: −log(mean) = −log 2
    assert iw_nll_from_log_weights(log_w).item() == pytest.approx(-math.log(2.0))
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        importance_weighted_nll(ConvVAE(SMALL), torch.zeros(1, 1, 28, 28, dtype=torch.uint8), k=0)


def test_how_many_rows_are_decoded_at_once_does_not_change_nll_iw(trained, sample_splits, monkeypatch):
    """The chunk bounds a worker's memory (bench/overhead.py --parts memory); the value is the
    same seeded draws whatever it is."""
    import vae.training

    pixels = sample_splits.val.pixels[:40]
    whole = importance_weighted_nll(trained, pixels, k=16, seed=5)
    monkeypatch.setattr(vae.training, "_IW_ROWS", 24)  # 1 image of 16 draws per chunk
    assert importance_weighted_nll(trained, pixels, k=16, seed=5) == pytest.approx(whole, abs=1e-3)
