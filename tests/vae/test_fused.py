"""Seeds trained together (vae.fused): each member is the solo run of its seed, within float
tolerance; a diverging member leaves the others as they were; a checkpoint resumes every member
exactly (CPU)."""

import dataclasses
import math

import pytest
import torch

from vae import ModelConfig, TrainConfig, train
from vae.errors import UsageError
from vae.fused import FusedState, train_fused

SMALL = ModelConfig(latent_dim=4, channels=(8, 16), hidden_dim=64)
SEEDS = (7, 11, 23)
# the largest weight difference seen between a member and its solo run after 2 epochs here was
# ~1e-6 (float32 sums in another order under vmap); 1e-4 leaves room across BLAS builds
TOLERANCE = 1e-4


def _configs(**overrides):
    values = dict(model=SMALL, epochs=2, batch_size=64, lr=2e-3, threads=1)
    values.update(overrides)
    return [TrainConfig(seed=s, **values) for s in SEEDS]


def _max_diff(a, b):
    return max(
        float((x - y).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_each_member_is_the_solo_run_of_its_seed(sample_splits):
    configs = _configs()
    fused = train_fused(configs, sample_splits)
    for i, config in enumerate(configs):
        solo = train(config, sample_splits)
        assert _max_diff(fused.member(i), solo.model) < TOLERANCE
        for ours, theirs in zip(fused.histories[i], solo.history, strict=True):
            assert ours.val_loss == pytest.approx(theirs.val_loss, rel=1e-5)
            assert ours.train_loss == pytest.approx(theirs.train_loss, rel=1e-5)
            assert ours.psnr_by_digit == pytest.approx(theirs.psnr_by_digit, rel=1e-5)


def test_a_diverging_member_leaves_the_others_training(sample_splits):
    configs = _configs()
    state = FusedState.fresh(configs, len(sample_splits.train))
    with torch.no_grad():
        for p in state.params.values():
            p[1] = math.nan  # member 1's loss is NaN from its first step
    seen = []
    state = train_fused(configs, sample_splits, state=state, on_epoch=lambda i, r, s: seen.append((i, r is None)))
    assert state.diverged == [None, 1, None] and state.histories[1] == []
    assert seen == [(0, False), (1, True), (2, False), (0, False), (2, False)]
    clean = train_fused([configs[0], configs[2]], sample_splits)
    assert (
        _max_diff(state.member(0), clean.member(0)) < TOLERANCE
        and _max_diff(state.member(2), clean.member(1)) < TOLERANCE
    )


def test_a_checkpoint_resumes_every_member_exactly(sample_splits, tmp_path):
    configs = _configs(epochs=3)
    straight = train_fused(configs, sample_splits)

    def stop_after_one(i, result, state):
        if i == len(configs) - 1 and state.epoch == 1:
            torch.save(state.to_dict(), tmp_path / "fused.pt")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fused(configs, sample_splits, on_epoch=stop_after_one)
    torch.manual_seed(999)  # whatever the process did in between
    values = torch.load(tmp_path / "fused.pt", weights_only=True)
    resumed = train_fused(
        configs, sample_splits, state=FusedState.from_dict(configs, values, n_train=len(sample_splits.train))
    )
    for i in range(len(configs)):
        assert _max_diff(straight.member(i), resumed.member(i)) == 0.0
        assert [r.val_loss for r in straight.histories[i]] == [r.val_loss for r in resumed.histories[i]]


def test_members_must_differ_in_their_seed_alone():
    configs = _configs()
    with pytest.raises(UsageError, match="seed alone"):
        FusedState.fresh([configs[0], dataclasses.replace(configs[1], lr=1e-3)], 100)
    with pytest.raises(UsageError, match="distinct seeds"):
        FusedState.fresh([configs[0], configs[0]], 100)
