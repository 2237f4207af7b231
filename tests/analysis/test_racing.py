"""Racing on hand-built numbers: the decision, its confidence against closed forms, the
sequential discount, contenders, the next step, and the race history."""

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import racing
from analysis.answers import both_answers, race_history, side_by_side, values_by_latent_dim
from analysis.racing import (
    Race,
    assess,
    mean_se,
    next_trial,
    sequential_confidence,
)
from analysis.selection import choose, select
from analysis.summary import summarize


def test_well_separated_sizes_give_full_confidence_and_only_the_answer_contends():
    race = assess({5: [15.0, 15.1, 14.9], 10: [18.0, 18.1, 17.9], 15: [20.0, 20.1, 19.9]})
    assert race.latent_dim == 15 and race.confidence > 0.999
    assert race.contenders == (15,)
    assert race.n_trials == {5: 3, 10: 3, 15: 3}


@pytest.fixture
def one_spread(monkeypatch):
    """Racing with one seed SD for all sizes (an infinite spread prior), whose posteriors have closed forms."""
    monkeypatch.setattr(racing, "SPREAD_PRIOR_DF", math.inf)


def test_two_sizes_confidence_is_the_student_t_posterior_of_their_difference(one_spread):
    # Tolerance rule, two sizes: the answer is the smaller one exactly when mu_a - mu_b >= -tolerance.
    # Under the pooled model the posterior of mu_a - mu_b is a Student t with n_a + n_b - 2 degrees of
    # freedom around the difference of the sample means, scaled by s * sqrt(1/n_a + 1/n_b).
    a, b = [18.1, 18.4, 18.2], [18.5, 18.3, 18.6, 18.4]
    race = assess({10: a, 20: b}, tolerance_db=0.3, n_draws=200_000)
    pooled = math.sqrt((np.var(a, ddof=1) * 2 + np.var(b, ddof=1) * 3) / 5)
    scale = pooled * math.sqrt(1 / 3 + 1 / 4)
    p_smaller = stats.t.cdf((np.mean(a) - np.mean(b) + 0.3) / scale, df=5)
    assert race.sd == pytest.approx(pooled) and race.df == 5
    assert race.p_answer[10] == pytest.approx(p_smaller, abs=0.005)
    assert race.latent_dim == 10 and race.confidence == pytest.approx(p_smaller, abs=0.005)  # 18.23 >= 18.45 - 0.3


def test_a_size_with_one_seed_borrows_the_pooled_spread(one_spread):
    # its mean is not taken as exact: under one SD for all sizes, the closed form
    race = assess({5: [15.0, 15.4], 10: [15.6]}, tolerance_db=0.0, n_draws=100_000)
    scale = math.sqrt(0.08) * math.sqrt(1 / 2 + 1)  # pooled s^2 = 0.08 with one degree of freedom
    assert race.df == 1 and race.p_answer[10] == pytest.approx(stats.t.cdf(0.4 / scale, df=1), abs=0.005)
    assert race.se[10] == pytest.approx(math.sqrt(0.08))


def test_each_size_has_its_own_spread_shrunk_toward_the_pooled_one():
    values = {10: [18.20, 18.22, 18.21], 15: [18.3, 18.8, 18.55], 20: [18.5, 18.6, 18.55]}
    race = assess(values)
    sum_sq = {d: float(((np.array(v) - np.mean(v)) ** 2).sum()) for d, v in values.items()}
    pooled = sum(sum_sq.values()) / 6
    assert race.sd == pytest.approx(math.sqrt(pooled)) and race.df == 6
    prior = racing.SPREAD_PRIOR_DF
    for dim, v in values.items():
        own = np.std(v, ddof=1)
        sd = math.sqrt((prior * pooled + sum_sq[dim]) / (prior + 2))  # the shrunk SD, 2 of its own degrees of freedom
        assert race.se[dim] == pytest.approx(sd / math.sqrt(3))
        assert min(own, math.sqrt(pooled)) < sd < max(own, math.sqrt(pooled))  # between its own and the pooled
    assert race.se[15] > race.se[20] > race.se[10]  # the widest spread, the least sure mean
    assert assess({10: [18.1], 15: [18.3, 18.5]}).se[10] == pytest.approx(np.std([18.3, 18.5], ddof=1))  # borrowed


def test_a_wide_spread_at_the_top_is_not_hidden_by_the_narrow_ones(monkeypatch):
    # four seeds each: 5 and 10 spread 0.05 dB, 15 and 20 (the best) 0.3 and 0.25; 10 is 0.17 dB
    # below them (tolerance 0.3). A pooled SD, pulled down by 5 and 10, would be surer of 10 than
    # 15's and 20's own spread allows
    unit = np.array([1.0, -1.0, 0.5, -0.5]) / np.std([1.0, -1.0, 0.5, -0.5], ddof=1)
    values = {dim: list(mean + sd * unit) for dim, mean, sd in ((5, 16.3, 0.05), (10, 18.33, 0.05), (15, 18.5, 0.3),
                                                                  (20, 18.5, 0.25))}
    per_size = assess(values, horizon=(2, 8))
    monkeypatch.setattr(racing, "SPREAD_PRIOR_DF", math.inf)
    pooled = assess(values, horizon=(2, 8))
    assert per_size.latent_dim == pooled.latent_dim == 10
    assert per_size.confidence < pooled.confidence - 0.05
    assert per_size.se[15] > per_size.se[20] > pooled.se[15] == pooled.se[10] > per_size.se[10]


def test_more_seeds_at_the_same_means_make_the_same_answer_surer():
    # 20 is 0.1 dB better than 15, well inside the 0.3 dB tolerance: the answer is 15 at any seed count
    rng = np.random.default_rng(0)
    confidences = []
    for n in (2, 4, 8, 16):
        noise = {d: rng.standard_normal(n) for d in (15, 20)}
        values = {d: list(18.0 + 0.1 * (d == 20) + 0.2 * (x - x.mean()) / x.std(ddof=1)) for d, x in noise.items()}
        race = assess(values)
        assert race.latent_dim == 15
        confidences.append(race.confidence)
    assert confidences == sorted(confidences) and confidences[0] < 0.9 < confidences[-1]


def test_one_se_moves_with_the_seeds_where_the_tolerance_rule_does_not():
    def at(n):  # sample means 18.0 and 18.2, per-seed SD 0.4, n seeds each
        spread = 0.4 * np.array([1.0, -1.0] * (n // 2))
        return {15: list(18.0 + spread), 20: list(18.2 + spread)}

    assert assess(at(2), rule="one-se").latent_dim == 15  # one SE = 0.4: 15 is within it
    assert assess(at(16), rule="one-se").latent_dim == 20  # one SE = 0.1: it is not
    assert assess(at(2)).latent_dim == assess(at(16)).latent_dim == 15  # within 0.3 dB either way


def test_sequential_discount():
    posterior = 0.97
    z = NormalDist().inv_cdf(posterior)
    expected = 1 - (0.03 + math.log(4 / 2) / 2 * z * NormalDist().pdf(z))
    assert sequential_confidence(posterior, (2, 4)) == pytest.approx(expected)
    assert sequential_confidence(posterior, (2, 4)) < sequential_confidence(posterior, (2, 3)) < posterior
    assert sequential_confidence(posterior, None) == sequential_confidence(posterior, (3, 3)) == posterior  # no racing
    values = {10: [18.1, 18.4, 18.2], 20: [18.5, 18.3, 18.9]}
    assert assess(values, horizon=(2, 8)).confidence < assess(values).confidence
    # each wrong answer is a walk of its own: two ways to be wrong cost more than one of their sum
    assert sequential_confidence(posterior, (2, 4), [0.03]) == sequential_confidence(posterior, (2, 4))
    assert sequential_confidence(posterior, (2, 4), [0.015, 0.015]) < sequential_confidence(posterior, (2, 4))
    assert sequential_confidence(posterior, (2, 4), [0.03, 0.0]) == sequential_confidence(posterior, (2, 4))


def test_single_size_no_data_and_no_spread():
    assert assess({8: [12.0]}).confidence == 1.0 and assess({8: [12.0]}).latent_dim == 8
    empty = assess({})
    assert empty.latent_dim is None and empty.confidence == 0.0 and empty.contenders == ()
    one_each = assess({5: [15.0], 10: [15.1]})  # one seed per size: no spread measured, nothing settled
    assert one_each.df == 0 and one_each.confidence == 0.0 and one_each.contenders == (5, 10)


def test_contenders_are_the_sizes_whose_role_is_unsettled():
    # 5 is far below; 10 is near the boundary (0.35 below 20 with a 0.3 tolerance); 15 and 20 tie
    values = {5: [15.0, 15.2], 10: [18.0, 18.3], 15: [18.5, 18.3], 20: [18.4, 18.6]}
    race = assess(values)
    assert race.contenders == (10, 15, 20)
    assert race.p_answer[5] < 0.001 and sum(race.p_answer.values()) == pytest.approx(1.0)


def test_knee():
    values = {2: [10.0, 10.1], 4: [15.0, 15.1], 8: [16.0, 16.1], 16: [16.5, 16.6]}
    race = assess(values, rule="knee")
    assert race.latent_dim == 4 and race.confidence > 0.999 and race.contenders == (4,)


def test_seeded_and_reproducible():
    values = {2: [10.0, 11.0, 12.0], 4: [10.5, 11.5, 12.5]}
    assert assess(values, seed=1) == assess(values, seed=1)
    assert assess(values, seed=1).confidence != assess(values, seed=2).confidence


def test_next_trial_stops_for_each_reason_or_feeds_the_contender_with_fewest_seeds():
    race = Race(15, 0.6, (10, 15, 20), p_answer={10: 0.3, 15: 0.6, 20: 0.1})
    handed = {5: 2, 10: 3, 15: 2, 20: 2}
    assert next_trial(race, handed, target=0.9, max_seeds=4, budget_left=True).latent_dim == 15  # fewest, least settled
    assert next_trial(race, handed, target=0.9, max_seeds=4, budget_left=False).stop_reason == "budget"
    assert (
        next_trial(race, {d: 4 for d in handed}, target=0.9, max_seeds=4, budget_left=True).stop_reason == "max-seeds"
    )
    assert next_trial(race, handed, target=0.5, max_seeds=4, budget_left=True).stop_reason == "confidence"
    assert (
        next_trial(Race(None, 0.0, ()), {}, target=0.9, max_seeds=4, budget_left=True).stop_reason
        == "no completed seeds trial"
    )


def test_race_round_trips_through_its_dict_and_says_a_close_call():
    race = assess({5: [15.0, 15.2], 15: [18.3, 18.5], 20: [18.4, 18.6]})
    again = Race.from_dict(race.to_dict())
    assert again.latent_dim == race.latent_dim == 15 and again.mean == race.mean and again.contenders == race.contenders
    assert (
        race.close_call()
        == "latent sizes 15 and 20 are within 0.3 dB of each other (0.10 dB apart); the rule takes the smaller, 15"
    )
    assert assess({5: [15.0, 15.2], 20: [18.4, 18.6]}).close_call() is None  # the best is chosen: nothing to say


def test_confidence_is_calibrated_over_truths_near_the_boundary():
    # True means drawn around a boundary (10 sits about 0.3 dB below 20): among the choices reported at
    # confidence >= 0.8 at least 80% are right, and the mean confidence is within 0.05 of the accuracy.
    rng = np.random.default_rng(7)
    right, confidence = [], []
    for race_seed in range(300):
        truth = {5: 16.3, 10: 18.15 + 0.15 * rng.standard_normal(), 15: 18.45 + 0.1 * rng.standard_normal(), 20: 18.48}
        values = {d: list(m + 0.2 * rng.standard_normal(3)) for d, m in truth.items()}
        race = assess(values, seed=race_seed, n_draws=1000)
        dims = np.array(sorted(truth))
        answer = choose(
            dims, np.array([truth[d] for d in dims]), np.zeros(4), rule="tolerance", tolerance=0.3
        ).latent_dim
        right.append(race.latent_dim == answer)
        confidence.append(race.confidence)
    right, confidence = np.array(right), np.array(confidence)
    assert right[confidence >= 0.8].mean() >= 0.8
    assert abs(confidence.mean() - right.mean()) < 0.05


def test_choose_is_the_rule_that_select_applies():
    values = {5: [15.0, 15.2, 15.1], 10: [18.0, 18.3, 18.1], 15: [18.2, 18.6, 18.1]}
    rows = [
        {
            "trial_id": f"{d}-{i}",
            "phase": "seeds",
            "status": "completed",
            "latent_dim": d,
            "psnr_mean": v,
            "mse_mean": 10 ** (-v / 10),
            **{f"psnr_digit_{k}": v for k in range(10)},
            **{f"mse_digit_{k}": 10 ** (-v / 10) for k in range(10)},
        }
        for d, vs in values.items()
        for i, v in enumerate(vs)
    ]
    trials = pd.DataFrame(rows)
    for rule in ("one-se", "tolerance", "knee"):
        dims = np.array(sorted(values))
        stats_ = [mean_se(values[d]) for d in dims]
        direct = choose(dims, np.array([m for m, _ in stats_]), np.array([s for _, s in stats_]), rule=rule)
        assert (
            select(summarize(trials), rule=rule).latent_dim == direct.latent_dim == assess(values, rule=rule).latent_dim
        )
    assert values_by_latent_dim(trials) == {d: list(v) for d, v in values.items()}


def test_race_history_follows_the_order_trials_finished():
    rows = [
        {
            "trial_id": "a",
            "phase": "seeds",
            "status": "completed",
            "latent_dim": 5,
            "psnr_mean": 10.0,
            "finished_at": 3.0,
        },
        {
            "trial_id": "b",
            "phase": "seeds",
            "status": "completed",
            "latent_dim": 5,
            "psnr_mean": 12.0,
            "finished_at": 1.0,
        },
        {
            "trial_id": "c",
            "phase": "seeds",
            "status": "completed",
            "latent_dim": 10,
            "psnr_mean": 14.0,
            "finished_at": 2.0,
        },
        {
            "trial_id": "d",
            "phase": "search",
            "status": "completed",
            "latent_dim": 10,
            "psnr_mean": 99.0,
            "finished_at": 0.5,
        },
    ]
    history = race_history(pd.DataFrame(rows))
    assert history["step"].max() == 3
    last = history[history["step"] == 3].set_index("latent_dim")
    assert last.loc[5, "mean"] == pytest.approx(11.0) and last.loc[5, "n_trials"] == 2
    assert last.loc[5, "se"] == pytest.approx(math.sqrt(2) / math.sqrt(2))
    first = history[history["step"] == 1]
    assert list(first["latent_dim"]) == [5] and first["mean"].iloc[0] == 12.0


def test_nll_is_raced_as_its_negative_so_it_shares_the_psnr_calibration():
    # lower nll is better: the same numbers negated must give the same decision, confidence and
    # contenders as PSNR does, so bench/calibration.py's check covers --metric nll too
    nll = {5: [130.0, 130.6, 129.8], 10: [112.0, 112.5, 111.7], 15: [109.9, 110.4, 110.2], 20: [110.1, 109.6, 110.0]}
    psnr_like = {d: [-v for v in values] for d, values in nll.items()}
    for rule in ("tolerance", "one-se", "knee"):
        by_nll = assess(nll, rule=rule, metric="nll", tolerance_nats=0.5, horizon=(3, 6))
        by_psnr = assess(psnr_like, rule=rule, tolerance_db=0.5, horizon=(3, 6))
        assert (by_nll.latent_dim, by_nll.confidence, by_nll.contenders, by_nll.p_answer) == (
            by_psnr.latent_dim, by_psnr.confidence, by_psnr.contenders, by_psnr.p_answer)
        assert by_nll.best_latent_dim == by_psnr.best_latent_dim
        assert by_nll.mean[15] == pytest.approx(np.mean(nll[15]))  # reported in nats, not negated
    race = assess(nll, metric="nll", tolerance_nats=0.5)
    assert race.latent_dim == 15 and race.best_latent_dim == 20  # 15 is within 0.5 nats of the lowest
    assert (
        race.close_call()
        == "latent sizes 15 and 20 are within 0.5 nats of each other (0.27 nats apart); the rule takes the smaller, 15"
    )
    assert Race.from_dict(race.to_dict()).metric == "nll"


def test_each_metric_answers_side_by_side_and_a_disagreement_is_explained():
    rows = []
    values = {5: ([15.0, 15.1], [130.0, 130.2]), 10: ([18.0, 18.1], [112.0, 112.3]), 20: ([19.0, 19.1], [112.1, 112.2])}
    for dim, (psnrs, nlls) in values.items():
        for i, (psnr, nll) in enumerate(zip(psnrs, nlls, strict=True)):
            rows.append({"trial_id": f"{dim}-{i}", "phase": "seeds", "status": "completed", "latent_dim": dim,
                         "psnr_mean": psnr, "nll_iw": nll})
    races = both_answers(pd.DataFrame(rows), metric="nll", tolerance_db=0.3, tolerance_nats=0.5)
    assert list(races) == ["nll", "psnr"] and races["nll"].latent_dim == 10 and races["psnr"].latent_dim == 20
    first, why = side_by_side(races)
    assert first.startswith("answers by metric: nll_iw 10 (confidence") and "mean PSNR 20" in first
    assert "the metrics differ" in why and "KL" in why
    same = both_answers(
        pd.DataFrame(rows).assign(nll_iw=lambda t: -t["psnr_mean"]), tolerance_db=0.3, tolerance_nats=0.3
    )
    assert len(side_by_side(same)) == 1  # they agree: one line
    # a table of an earlier release has no nll_iw: only the PSNR answer
    assert list(both_answers(pd.DataFrame(rows).drop(columns="nll_iw"))) == ["psnr"]


def test_stop_reasons_are_one_enum_with_their_words_and_their_file_values():
    import json

    from analysis.racing import StopReason

    assert [r.value for r in StopReason] == ["confidence", "max-seeds", "budget", "no completed seeds trial"]
    assert json.dumps({"stop_reason": StopReason.MAX_SEEDS}) == '{"stop_reason": "max-seeds"}'
    assert f"{StopReason.BUDGET}" == "budget" and StopReason("budget") is StopReason.BUDGET
    assert StopReason.CONFIDENCE.words(0.93, 0.9) == "confidence 0.93 reached the target 0.90"
    assert "--max-seeds" in StopReason.MAX_SEEDS.why_not
