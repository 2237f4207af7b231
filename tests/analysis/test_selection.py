import math

import numpy as np
import pandas as pd
import pytest

from analysis.rules import RULE, RULES
from analysis.selection import answers, choose, select
from analysis.summary import summarize, usage_words
from vae.errors import UsageError


def _trials(spec, *, extra=()):
    """spec: {latent_dim: [psnr of each completed seeds trial]}; extra: raw rows."""
    rows = []
    for dim, values in spec.items():
        for i, psnr in enumerate(values):
            rows.append(_row(f"{dim}-{i}", "seeds", "completed", dim, psnr))
    rows.extend(extra)
    return pd.DataFrame(rows)


def _row(trial_id, phase, status, dim, psnr):
    row = {"trial_id": trial_id, "phase": phase, "status": status, "latent_dim": dim, "psnr_mean": psnr,
           "mse_mean": 10 ** (-psnr / 10) if psnr == psnr else math.nan}
    for d in range(10):
        row[f"psnr_digit_{d}"] = psnr + d * 0.1 if psnr == psnr else math.nan
        row[f"mse_digit_{d}"] = row["mse_mean"]
    return row


def test_summary_means_and_standard_errors_over_completed_seeds_only():
    extra = [_row("s1", "search", "completed", 5, 40.0), _row("st", "seeds", "errored", 5, math.nan),
             _row("x", "seeds", "diverged", 5, 0.0)]
    summary = summarize(_trials({5: [10.0, 12.0, 14.0]}, extra=extra)).set_index("latent_dim")
    assert summary.loc[5, "n_trials"] == 3
    assert summary.loc[5, "psnr_mean"] == pytest.approx(12.0)
    assert summary.loc[5, "psnr_se"] == pytest.approx(2.0 / math.sqrt(3))  # sd 2, n 3
    assert summary.loc[5, "psnr_digit_9"] == pytest.approx(12.9)
    assert summary.loc[5, "best_trial_id"] == "5-2"


def test_one_se_picks_smallest_size_within_one_se_of_best():
    # best: 20 at 20.0 ± 0.5 (values 19.5, 20.5) -> threshold 19.5; 15 at 19.6 qualifies, 10 at 18 does not
    table = _trials({5: [15.0, 15.2], 10: [18.0, 18.0], 15: [19.5, 19.7], 20: [19.5, 20.5]})
    selection = select(summarize(table), rule="one-se")
    assert selection.latent_dim == 15 and selection.best_latent_dim == 20
    assert "one standard error" in selection.rule and "19.50" in selection.rule
    assert [d["latent_dim"] for d in selection.per_latent_dim] == [5, 10, 15, 20]
    assert selection.best_trial_id == "15-1"


def test_one_se_keeps_the_best_when_nothing_smaller_is_close():
    table = _trials({5: [15.0, 15.2], 10: [18.0, 18.1]})
    assert select(summarize(table)).latent_dim == 10


def test_tolerance_rule():
    table = _trials({5: [17.0, 17.0], 10: [18.6, 18.6], 15: [19.0, 19.0]})
    chosen = select(summarize(table), rule="tolerance", tolerance_db=0.5)
    assert chosen.latent_dim == 10 and chosen.threshold == pytest.approx(18.5)  # the best, 19.0, less 0.5 dB
    assert chosen.to_dict()["threshold"] == 18.5 and select(summarize(table), rule="knee").threshold is None
    assert select(summarize(table), rule="tolerance", tolerance_db=0.3).latent_dim == 15
    assert select(summarize(table), rule="tolerance", tolerance_db=2.5).latent_dim == 5


def test_knee_rule_finds_the_bend():
    table = _trials({2: [10.0, 10.0], 5: [16.0, 16.0], 10: [17.0, 17.0], 20: [17.5, 17.5], 32: [17.8, 17.8]})
    selection = select(summarize(table), rule="knee")
    assert selection.latent_dim == 5 and "knee" in selection.rule


def test_knee_with_two_sizes_falls_back_to_best_mean():
    selection = select(summarize(_trials({5: [15.0, 15.1], 10: [16.0, 16.1]})), rule="knee")
    assert selection.latent_dim == 10 and selection.notes


def test_single_latent_size():
    selection = select(summarize(_trials({8: [12.0, 12.5]})))
    assert selection.latent_dim == 8 and "only latent size 8" in selection.rule


def test_size_without_completed_trials_is_left_out_and_named():
    table = _trials({5: [15.0, 15.1], 10: [16.0, 16.2]}, extra=[_row("e", "seeds", "errored", 20, math.nan)])
    selection = select(summarize(table, latent_dims=[5, 10, 15, 20]))
    assert selection.latent_dim == 10
    assert any("15, 20" in note for note in selection.notes)
    assert {d["latent_dim"]: d["n_trials"] for d in selection.per_latent_dim} == {5: 2, 10: 2, 15: 0, 20: 0}


def test_ties_go_to_the_smaller_size():
    table = _trials({5: [16.0, 16.0], 10: [16.0, 16.0]})
    for rule in ("one-se", "tolerance"):
        assert select(summarize(table), rule=rule).latent_dim == 5


def test_fewer_than_two_seeds_falls_back_to_best_mean_and_says_so():
    table = _trials({5: [15.0], 10: [16.0]})
    selection = select(summarize(table), rule="one-se")
    assert selection.latent_dim == 10
    assert "fewer than two seeds" in selection.rule and "--seeds 2" in " ".join(selection.notes)


def test_nothing_completed_is_a_clear_error():
    table = pd.DataFrame([_row("e", "seeds", "errored", 5, math.nan)])
    with pytest.raises(UsageError, match="no latent size has a completed seeds trial"):
        select(summarize(table))


@pytest.mark.parametrize(
    "kwargs, message", [({"rule": "vibes"}, "rule must be"), ({"tolerance_db": -1.0}, "tolerance_db")]
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        select(summarize(_trials({5: [1.0, 2.0]})), **kwargs)


def test_the_default_rule_is_practical_equivalence_at_the_default_tolerance():
    # 15 is 0.25 dB below 20 (within 0.3 dB), 10 is 0.35 dB below (not)
    table = _trials({5: [16.0, 16.0], 10: [18.15, 18.15], 15: [18.25, 18.25], 20: [18.5, 18.5]})
    selection = select(summarize(table))
    assert selection.latent_dim == 15 and selection.rule.startswith("tolerance: ") and "within 0.3 dB" in selection.rule


@pytest.mark.parametrize("rule", ["tolerance", "one-se", "knee"])
def test_the_vectorised_rule_gives_choose_answer_on_every_row(rule):
    rng = np.random.default_rng(3)
    dims = np.array([2, 5, 10, 20])
    rows = 17.0 + np.cumsum(rng.uniform(0, 1, size=(200, 4)), axis=1) * rng.uniform(0.1, 1, size=(200, 1))
    ses = np.array([0.1, 0.2, 0.3, 0.2])
    expected = [choose(dims, row, ses, rule=rule, tolerance=0.4).latent_dim for row in rows]
    assert answers(dims, rows, ses, rule=rule, tolerance=0.4).tolist() == expected


def test_nll_selects_the_smallest_size_within_the_tolerance_of_the_lowest():
    rows = []
    for dim, nlls in {5: [130.0, 130.4], 10: [112.0, 112.4], 15: [110.3, 110.5], 20: [110.0, 110.2]}.items():
        for i, nll in enumerate(nlls):
            rows.append({"trial_id": f"{dim}-{i}", "phase": "seeds", "status": "completed", "latent_dim": dim,
                         "psnr_mean": float(dim), "mse_mean": 0.01, "nll_iw": nll, "active_units": dim - 1.0 - i})
    summary = summarize(pd.DataFrame(rows), metric="nll")
    selection = select(summary, metric="nll", tolerance_nats=0.5)
    assert selection.latent_dim == 15 and selection.best_latent_dim == 20
    assert "nll_iw is within 0.5 nats of the best" in selection.rule and "threshold 110.60 nats" in selection.rule
    assert select(summary, metric="nll", tolerance_nats=0.1).latent_dim == 20
    assert select(summary).latent_dim == 20  # by PSNR, which here rises with the size
    assert summary.set_index("latent_dim").loc[20, "best_trial_id"] == "20-0"  # lowest nll_iw of its seeds
    per_dim = {d["latent_dim"]: d for d in selection.per_latent_dim}
    assert per_dim[10]["active_units"] == pytest.approx(8.5) and per_dim[10]["active_units_se"] == pytest.approx(0.5)
    assert usage_words(summary)[0] == "latent 5 uses 3.5 ± 0.5 of its 5 dimensions"


def test_nll_on_a_table_without_it_is_a_usage_error():
    table = _trials({5: [15.0, 15.1], 10: [16.0, 16.1]})
    with pytest.raises(UsageError, match="nll_iw.*--metric psnr"):
        select(summarize(table), metric="nll")


@pytest.mark.parametrize("name", RULES)
def test_each_rule_in_the_registry_draws_a_threshold_exactly_when_it_has_a_boundary(name):
    table = _trials({5: [17.0, 17.2], 10: [18.6, 18.5], 15: [19.0, 18.9]})
    chosen = select(summarize(table), rule=name)
    assert (chosen.threshold is not None) == RULE[name].has_boundary
    assert chosen.rule.startswith(f"{name}: ")


def test_a_new_rule_is_one_entry_in_the_registry(monkeypatch):
    """A toy rule, `half-tolerance`, added to `analysis.rules.RULE` alone: the choice, its words
    and threshold, and racing's confidence all follow it with no other change."""
    from analysis.racing import assess
    from analysis.rules import Rule

    toy = Rule("half-tolerance", "the smallest size within half the tolerance of the best",
               margin=lambda best_se, tolerance: tolerance / 2,
               within=lambda tolerance, unit: f"within {tolerance / 2:g} {unit} of the best", uses_tolerance=True)
    monkeypatch.setitem(RULE, toy.name, toy)
    values = {5: [17.0, 17.2], 10: [18.70, 18.80], 15: [19.0, 19.0]}  # 10 is 0.25 dB below 15
    summary = summarize(_trials(values))
    assert select(summary, rule="tolerance", tolerance_db=0.3).latent_dim == 10
    chosen = select(summary, rule="half-tolerance", tolerance_db=0.3)
    assert chosen.latent_dim == 15 and chosen.threshold == pytest.approx(19.0 - 0.15)
    assert "within 0.15 dB of the best" in chosen.rule
    race = assess(values, rule="half-tolerance", tolerance_db=0.3, seed=0)
    assert race.latent_dim == 15 and 0 < race.confidence < 1
