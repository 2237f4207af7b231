"""Racing on hand-built numbers: decision confidence, contenders, the race history."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.racing import assess, mean_se, race_history, values_by_latent_dim
from analysis.selection import choose, select
from analysis.summary import summarize


def test_well_separated_sizes_give_full_confidence_and_only_the_best_contends():
    race = assess({5: [15.0, 15.1, 14.9], 10: [18.0, 18.1, 17.9], 15: [20.0, 20.1, 19.9]})
    assert race.latent_dim == 15 and race.confidence == 1.0
    assert race.contenders == (15,)
    assert race.n_trials == {5: 3, 10: 3, 15: 3}


def test_overlapping_sizes_are_contenders_and_lower_the_confidence():
    # 15 and 20 overlap the one-SE boundary of the best (20): either may be chosen
    values = {5: [15.0, 15.2], 10: [18.0, 18.2], 15: [19.6, 20.4], 20: [19.7, 20.5]}
    race = assess(values)
    assert race.latent_dim == 15  # within one SE of 20's mean
    assert 0.3 < race.confidence < 0.9
    assert race.contenders == (15, 20)
    assert 10 not in race.contenders and 5 not in race.contenders


def test_more_seeds_for_the_contenders_raise_the_confidence():
    few = {10: [18.0, 18.8], 15: [18.3, 19.1]}  # means 18.4 and 18.7, SE 0.4 each: too close to call
    many = {10: few[10] + [17.9, 18.1, 18.0, 18.2, 17.8, 18.0], 15: few[15] + [19.0, 19.2, 19.1, 18.9, 19.3, 19.0]}
    assert assess(many).confidence > assess(few).confidence
    assert assess(many).confidence >= 0.9


def test_the_confidence_is_the_share_of_resamples_choosing_the_same_size():
    values = {2: [10.0, 11.0, 12.0], 4: [10.5, 11.5, 12.5]}
    race = assess(values, n_resamples=400, seed=1)
    assert race.confidence * 400 == pytest.approx(round(race.confidence * 400))
    assert assess(values, n_resamples=400, seed=1) == race  # seeded: reproducible


def test_single_size_and_no_data():
    assert assess({8: [12.0]}).confidence == 1.0 and assess({8: [12.0]}).latent_dim == 8
    empty = assess({})
    assert empty.latent_dim is None and empty.confidence == 0.0 and empty.contenders == ()


def test_a_size_without_standard_error_is_always_a_contender():
    race = assess({5: [15.0, 15.1], 10: [30.0]})  # 10 has one seed: no SE
    assert 10 in race.contenders


def test_tolerance_rule_uses_its_own_boundary():
    values = {5: [19.0, 19.2], 10: [19.6, 19.8], 15: [20.0, 20.2]}
    race = assess(values, rule="tolerance", tolerance_db=0.5)
    assert race.latent_dim == 10  # 19.7 >= 20.1 - 0.5
    assert 10 in race.contenders and 15 in race.contenders and 5 not in race.contenders


def test_knee_contenders_come_from_the_resamples():
    values = {2: [10.0, 10.1], 4: [15.0, 15.1], 8: [16.0, 16.1], 16: [16.5, 16.6]}
    race = assess(values, rule="knee")
    assert race.latent_dim == 4 and race.confidence == 1.0 and race.contenders == (4,)


def test_choose_is_the_rule_that_select_applies():
    values = {5: [15.0, 15.2, 15.1], 10: [18.0, 18.3, 18.1], 15: [18.2, 18.6, 18.1]}
    rows = [{"trial_id": f"{d}-{i}", "phase": "seeds", "status": "completed", "latent_dim": d, "psnr_mean": v,
             "mse_mean": 10 ** (-v / 10), **{f"psnr_digit_{k}": v for k in range(10)},
             **{f"mse_digit_{k}": 10 ** (-v / 10) for k in range(10)}} for d, vs in values.items() for i, v in enumerate(vs)]
    trials = pd.DataFrame(rows)
    for rule in ("one-se", "tolerance", "knee"):
        dims = np.array(sorted(values))
        stats = [mean_se(values[d]) for d in dims]
        direct = choose(dims, np.array([m for m, _ in stats]), np.array([s for _, s in stats]), rule=rule)
        assert select(summarize(trials), rule=rule).latent_dim == direct.latent_dim
    assert values_by_latent_dim(trials) == {d: list(v) for d, v in values.items()}


def test_race_history_follows_the_order_trials_finished():
    rows = [
        {"trial_id": "a", "phase": "seeds", "status": "completed", "latent_dim": 5, "psnr_mean": 10.0, "finished_at": 3.0},
        {"trial_id": "b", "phase": "seeds", "status": "completed", "latent_dim": 5, "psnr_mean": 12.0, "finished_at": 1.0},
        {"trial_id": "c", "phase": "seeds", "status": "completed", "latent_dim": 10, "psnr_mean": 14.0, "finished_at": 2.0},
        {"trial_id": "d", "phase": "search", "status": "completed", "latent_dim": 10, "psnr_mean": 99.0, "finished_at": 0.5},
    ]
    history = race_history(pd.DataFrame(rows))
    assert history["step"].max() == 3
    last = history[history["step"] == 3].set_index("latent_dim")
    assert last.loc[5, "psnr_mean"] == pytest.approx(11.0) and last.loc[5, "n_trials"] == 2
    assert last.loc[5, "psnr_se"] == pytest.approx(math.sqrt(2) / math.sqrt(2))
    first = history[history["step"] == 1]
    assert list(first["latent_dim"]) == [5] and first["psnr_mean"].iloc[0] == 12.0
