import pytest
import torch

from vae import ConvVAE, ModelConfig


@pytest.mark.parametrize("latent_dim", [2, 5, 15, 32])
def test_shapes_for_several_latent_sizes(latent_dim):
    model = ConvVAE(ModelConfig(latent_dim=latent_dim, channels=(8, 16), hidden_dim=32))
    x = torch.rand(6, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (6, latent_dim)
    with torch.no_grad():
        images = model.decode(torch.randn(6, latent_dim))
    assert images.shape == (6, 1, 28, 28)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    recon = model.reconstruct(x)
    assert recon.shape == x.shape and not recon.requires_grad
    logits, mu2, _ = model(x)
    assert logits.shape == x.shape and mu2.shape == (6, latent_dim)


def test_reconstruct_decodes_the_posterior_mean():
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(latent_dim=4)).eval()
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))  # no sampling
    assert torch.allclose(model.reconstruct(x), model.decode(model.encode(x)[0]))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"latent_dim": 0}, "latent_dim must be"), ({"latent_dim": 2.5}, "latent_dim must be"),
     ({"channels": (8,)}, "channels must be"), ({"hidden_dim": 0}, "hidden_dim must be")],
)
def test_model_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)
