import math

import pytest
import torch

from vae import ModelConfig, TrainConfig, TrainingDiverged, TrainState, train
from vae.checkpoint import load_state, load_weights, save_state

SMALL = ModelConfig(latent_dim=4, channels=(8, 16), hidden_dim=64)


def _config(**overrides):
    values = dict(model=SMALL, epochs=3, batch_size=64, lr=2e-3, seed=7, threads=1)
    values.update(overrides)
    return TrainConfig(**values)


def test_validation_loss_falls_and_every_epoch_reports(sample_splits):
    seen = []
    state = train(_config(), sample_splits, on_epoch=lambda result, _: seen.append(result))
    assert [r.epoch for r in seen] == [1, 2, 3]
    assert seen[-1].val_loss < seen[0].val_loss
    assert len(seen[-1].psnr_by_digit) == 10 and all(math.isfinite(v) for v in seen[-1].psnr_by_digit)
    assert seen[-1].psnr_mean == pytest.approx(sum(seen[-1].psnr_by_digit) / 10)
    flat = seen[-1].flat()
    assert {"val_loss", "mse_digit_9", "psnr_digit_0"} <= set(flat)
    assert state.history == seen


def test_seeded_runs_are_reproducible_and_seeds_differ(sample_splits):
    first = train(_config(epochs=2), sample_splits).history
    second = train(_config(epochs=2), sample_splits).history
    other = train(_config(epochs=2, seed=8), sample_splits).history
    assert [r.val_loss for r in first] == [r.val_loss for r in second]
    assert [r.val_loss for r in first] != [r.val_loss for r in other]


def test_deterministic_runs_are_identical_and_the_setting_is_the_processs_for_the_run(sample_splits):
    try:
        first = train(_config(epochs=2, deterministic=True), sample_splits)
        assert torch.are_deterministic_algorithms_enabled()
        second = train(_config(epochs=2, deterministic=True), sample_splits)
        untimed = [{k: v for k, v in r.flat().items() if not k.endswith("time_s")} for r in first.history]
        assert untimed == [{k: v for k, v in r.flat().items() if not k.endswith("time_s")} for r in second.history]
        for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        train(_config(epochs=1), sample_splits)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("schedule", ["onecycle", "constant"])
def test_resume_from_checkpoint_matches_an_uninterrupted_run(sample_splits, tmp_path, schedule):
    config = _config(epochs=3, lr_schedule=schedule)
    straight = train(config, sample_splits).history

    def stop_after_two(result, state):
        if result.epoch == 2:
            save_state(tmp_path, state.model, config, state.to_dict())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, sample_splits, on_epoch=stop_after_two)
    torch.manual_seed(999)  # whatever the process did in between
    restored = TrainState.from_dict(
        config, load_weights(tmp_path), load_state(tmp_path), n_train=len(sample_splits.train)
    )
    resumed = train(config, sample_splits, state=restored).history
    assert [r.epoch for r in resumed] == [1, 2, 3]
    assert [r.val_loss for r in resumed] == pytest.approx([r.val_loss for r in straight], rel=1e-6)


def test_diverging_loss_stops_with_a_clear_error(sample_splits):
    with pytest.raises(TrainingDiverged, match="not finite"):
        train(_config(lr=1e8, epochs=3), sample_splits)


def test_threads_follow_the_config(sample_splits):
    train(_config(epochs=1, threads=2), sample_splits)
    assert torch.get_num_threads() == 2
    train(_config(epochs=1, threads=1), sample_splits)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [({"lr": 0.0}, "lr must be"), ({"beta": -1.0}, "beta must be"), ({"epochs": 0}, "epochs must be"),
     ({"threads": 0}, "threads must be"), ({"batch_size": 0}, "batch_size must be"),
     ({"cuda_graphs": "yes"}, "cuda_graphs must be")],
)
def test_train_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_cuda_graphs_off_a_cuda_device_are_refused_before_anything_is_trained(sample_splits):
    from vae.fused import train_fused

    epochs = []
    config = _config(cuda_graphs=True)
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device but this training runs on cpu"):
        train(config, sample_splits, on_epoch=lambda result, _: epochs.append(result))
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        train_fused([config, _config(cuda_graphs=True, seed=8)], sample_splits,
                    on_epoch=lambda *_: epochs.append(1))
    assert epochs == []


def test_from_dict_rejects_unknown_keys_and_round_trips():
    config = _config()
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TrainConfig key"):
        TrainConfig.from_dict({**config.to_dict(), "learning_rate": 1})
    with pytest.raises(ValueError, match="unknown ModelConfig key"):
        TrainConfig.from_dict({"model": {"latent": 3}})


def test_onecycle_warms_up_to_the_peak_then_anneals_far_below_it(sample_splits):
    rates = []
    config = _config(epochs=3, lr_schedule="onecycle", lr=4e-3)
    train(config, sample_splits, on_epoch=lambda _r, state: rates.append(state.optimizer.param_groups[0]["lr"]))
    assert rates[0] > 4e-3 / 25  # OneCycleLR starts at peak / 25: one epoch in, it has warmed up
    assert max(rates) <= 4e-3
    assert rates[-1] < 4e-3 / 100  # annealed by the end of the last epoch
    constant = []
    train(
        _config(epochs=2, lr=4e-3, lr_schedule="constant"),
        sample_splits,
        on_epoch=lambda _r, state: constant.append(state.optimizer.param_groups[0]["lr"]),
    )
    assert constant == [4e-3, 4e-3]


def test_epoch_results_carry_the_kl_and_the_training_time(sample_splits):
    result = train(_config(epochs=1), sample_splits).history[0]
    assert result.kl > 0 and math.isfinite(result.kl)
    assert 0 < result.fit_time_s < result.time_s
