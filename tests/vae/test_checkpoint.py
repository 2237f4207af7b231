import os
import pickle

import pytest
import torch

from vae import ConvVAE, DataError, ModelConfig, TrainConfig, load_model, save_model


def test_round_trip_restores_the_same_model(tmp_path):
    config = TrainConfig(model=ModelConfig(latent_dim=6, channels=(8, 16), hidden_dim=32))
    torch.manual_seed(1)
    model = ConvVAE(config.model).eval()
    save_model(tmp_path / "m", model, config)
    loaded = load_model(tmp_path / "m")
    assert loaded.latent_dim == 6
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))
    assert torch.equal(load_model(tmp_path / "m" / "model.pt").reconstruct(x), model.reconstruct(x))
    # plain torch users can read the weights the safe way too
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert not list(tmp_path.glob("m/.*tmp"))  # no temporary files left behind


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_crafted_pickle_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(model=ModelConfig(latent_dim=3))
    save_model(tmp_path / "m", ConvVAE(config.model), config)
    with open(tmp_path / "m" / "model.pt", "wb") as handle:
        pickle.dump({"weights": _Payload()}, handle)
    with pytest.raises(DataError, match="refused to load"):
        load_model(tmp_path / "m")
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_missing_or_corrupt_config_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt"):
        load_model(tmp_path)
