"""The staged searcher through Ray Tune's Searcher interface, on a real Optuna study (journal
file), without a cluster: the order of the stages, what Optuna is told for each outcome, racing
and its stop reasons, and a save/restore round trip. Its parts alone: test_stages.py, test_study.py."""

import json
import math

import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from search.config import SearchConfig
from search.engine.scheduling import SearchOnlyASHA
from search.engine.searcher import StagedSearcher
from search.engine.stages import trial_seed
from search.engine.study import STUDY_NAME, journal_storage

EPOCHS = 4


def _searcher(tmp_path, **overrides):
    values = dict(latent_dims=(2, 8), trials=4, seeds=2, max_seeds=4, epochs=EPOCHS, lr_range=(1e-3, 1e-2), seed=0)
    config = SearchConfig(**{**values, **overrides})
    return StagedSearcher(config, experiment=tmp_path)


def _finish(searcher, trial_id, psnr, *, epochs=EPOCHS, **extra):
    for epoch in range(1, epochs + 1):
        searcher.on_trial_result(trial_id, {"training_iteration": epoch, "psnr_mean": psnr - (epochs - epoch)})
    searcher.on_trial_complete(trial_id, {"training_iteration": epochs, "psnr_mean": psnr, **extra})


def _study(tmp_path):
    return optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(tmp_path / "optuna.journal"))


def test_every_size_is_enqueued_first_then_tpe_proposes_without_random_sampling(tmp_path):
    searcher = _searcher(tmp_path, trials=8)
    random_calls = []
    sampler = searcher.study.study.sampler
    original = sampler._random_sampler.sample_independent
    sampler._random_sampler.sample_independent = lambda *a, **k: random_calls.append(a[2]) or original(*a, **k)
    configs = {}
    for i in range(8):
        configs[f"t{i}"] = searcher.suggest(f"t{i}")
        if i >= 1:  # results arrive while later trials are proposed, as with 2 slots
            _finish(searcher, f"t{i - 1}", 10.0 + math.log10(configs[f"t{i - 1}"]["lr"]) + i / 10)
    assert [configs[f"t{i}"]["latent_dim"] for i in range(2)] == [2, 8]
    assert configs["t0"]["lr"] == configs["t1"]["lr"] == pytest.approx(math.sqrt(1e-3 * 1e-2))
    assert all(c["phase"] == "search" and c["stage"] == "search" for c in configs.values())
    assert random_calls == []  # TPE proposed every trial after the enqueued ones


def test_what_optuna_is_told_for_each_outcome(tmp_path):
    searcher = _searcher(tmp_path, latent_dims=(2, 4, 8, 16), trials=4)
    for i in range(4):
        searcher.suggest(f"t{i}")
    _finish(searcher, "t0", 12.0)  # all epochs
    _finish(searcher, "t1", 11.0, epochs=2)  # stopped by ASHA after 2 of 4 epochs
    searcher.on_trial_complete("t2", None, error=True)  # crashed, retries spent
    searcher.on_trial_complete("t3", {"training_iteration": 1, "psnr_mean": 0.0, "diverged": True})
    study = _study(tmp_path)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"]
    assert trials[0].value == 12.0 and trials[3].value == 0.0
    assert trials[1].intermediate_values == {1: 10.0, 2: 11.0}  # per-epoch values kept


def test_seeds_wait_for_their_sizes_search_trials_and_use_the_best_lr(tmp_path):
    searcher = _searcher(tmp_path)
    for i in range(4):
        searcher.suggest(f"s{i}")
    dims = {f"s{i}": searcher.ledger.trials[f"s{i}"].latent_dim for i in range(4)}
    assert searcher.suggest("blocked") is None  # every size still has a search trial running
    for trial_id, dim in dims.items():
        if dim == 2:
            _finish(searcher, trial_id, 11.0 + searcher.ledger.trials[trial_id].lr * 100)
    config = searcher.suggest("a")
    assert config["phase"] == "seeds" and config["stage"] == "seeds" and config["latent_dim"] == 2
    best = max((e for e in searcher.ledger.trials.values() if e.stage == "search" and e.latent_dim == 2),
               key=lambda e: (e.epochs, e.psnr))
    assert config["lr"] == best.lr and config["seed"] == trial_seed(0, 1)
    assert searcher.suggest("b")["seed"] == trial_seed(0, 2)
    _finish(searcher, "a", 12.0)  # size 2 measured, size 8 not yet: no decision to be sure of
    race = json.loads((tmp_path / "race.json").read_text())
    assert race["latent_dim"] == 2 and race["confidence"] == 0.0 and race["stage"] == "seeds"
    assert searcher.suggest("c") is None  # size 2 has its seeds; size 8's search is still running


def _through_seeds(searcher, values):
    """Search trials, then the seeds trials with the given PSNRs per size."""
    for i in range(searcher._config.trials):
        searcher.suggest(f"s{i}")
    for i in range(searcher._config.trials):
        _finish(searcher, f"s{i}", 10.0)
    handed = {}
    while (config := searcher.suggest(f"seed{len(handed)}")) not in (None, Searcher.FINISHED) and config[
        "stage"
    ] == "seeds":
        handed[f"seed{len(handed)}"] = config
    order = {d: iter(v) for d, v in values.items()}
    for trial_id, seeds_config in handed.items():
        _finish(searcher, trial_id, next(order[seeds_config["latent_dim"]]))
    return config  # what the searcher said once every seeds trial was handed out


def test_a_clear_decision_stops_racing_at_once(tmp_path):
    searcher = _searcher(tmp_path)
    last = _through_seeds(searcher, {2: [11.0, 11.1], 8: [15.0, 15.1]})
    assert last is None  # every seeds trial handed out, none finished yet: racing waits for them
    assert searcher.suggest("next") == Searcher.FINISHED
    race = json.loads((tmp_path / "race.json").read_text())
    assert race["stage"] == "done" and race["stop_reason"] == "confidence" and race["latent_dim"] == 8
    assert race["confidence"] >= 0.9
    # race.json is the in-memory state, serialised
    assert race == searcher.race.to_dict() and searcher.race.done and searcher.race.latent_dim == 8


def test_a_close_call_races_the_contenders_until_max_seeds(tmp_path):
    searcher = _searcher(tmp_path, max_seeds=3)
    # means 18.4 and 18.9, 0.5 dB apart against a 0.3 dB tolerance, per-seed SD 0.57: confidence about 0.6
    _through_seeds(searcher, {2: [18.0, 18.8], 8: [18.5, 19.3]})
    race = json.loads((tmp_path / "race.json").read_text())
    assert race["confidence"] < 0.9 and sorted(race["contenders"]) == [2, 8]
    first = searcher.suggest("r0")
    assert json.loads((tmp_path / "race.json").read_text())["stage"] == "racing"
    second = searcher.suggest("r1")
    assert {first["latent_dim"], second["latent_dim"]} == {2, 8}  # both contenders, one slot each
    assert first["stage"] == second["stage"] == "racing" and first["phase"] == "seeds"
    assert first["seed"] == second["seed"] == trial_seed(0, 3)  # seed k is shared by the sizes
    assert searcher.suggest("r2") is None  # every contender at --max-seeds, but results are pending
    _finish(searcher, "r0", 18.4)
    _finish(searcher, "r1", 18.9)  # the means stay put: still a close call
    assert searcher.suggest("r3") == Searcher.FINISHED
    race = json.loads((tmp_path / "race.json").read_text())
    assert race["stop_reason"] == "max-seeds" and race["confidence"] < 0.9 and race["n_trials"] == {"2": 3, "8": 3}


def test_the_trial_budget_ends_racing(tmp_path):
    searcher = _searcher(tmp_path, max_trials=9)  # 4 search + 4 seeds + 1 racing trial
    _through_seeds(searcher, {2: [18.0, 18.8], 8: [18.5, 19.3]})
    assert searcher.suggest("r0")["stage"] == "racing"
    assert searcher.suggest("r1") is None
    _finish(searcher, "r0", 18.5)  # confidence stays about 0.6, with room for more seeds: only the budget stops it
    assert searcher.suggest("r2") == Searcher.FINISHED
    race = json.loads((tmp_path / "race.json").read_text())
    assert race["stop_reason"] == "budget" and race["confidence"] < 0.9


def test_save_and_restore_keep_the_stages_and_close_orphaned_study_trials(tmp_path):
    searcher = _searcher(tmp_path)
    for i in range(2):
        searcher.suggest(f"s{i}")
    _finish(searcher, "s0", 12.0)
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("lost")  # asked after the snapshot: the driver dies before Tune saves it

    restored = _searcher(tmp_path)
    restored.restore(str(tmp_path / "searcher.pkl"))
    config = restored.suggest("s2")
    study = _study(tmp_path)
    states = {t.number: t.state.name for t in study.trials}
    assert states[0] == "COMPLETE" and states[1] == "RUNNING"  # s1 is still Tune's, and alive
    assert "FAIL" in states.values()  # the orphan was closed
    assert config["phase"] == "search" and restored.ledger.count("search") == 3
    _finish(restored, "s1", 13.0)
    assert _study(tmp_path).trials[1].state.name == "COMPLETE"
    _finish(restored, "s0", 12.0)  # Tune may report a trial again after a restore: ignored


def _trial(phase):
    return Trial("trainable", config={"phase": phase}, stub=True)


def test_asha_stops_lagging_search_trials_but_never_seeds_trials():
    scheduler = SearchOnlyASHA(time_attr="training_iteration", max_t=8, grace_period=1, reduction_factor=2,
                               metric="psnr_mean", mode="max")
    for i in range(4):
        good = _trial("search")
        scheduler.on_trial_add(None, good)
        assert (
            scheduler.on_trial_result(None, good, {"training_iteration": 1, "psnr_mean": 20.0 + i})
            == TrialScheduler.CONTINUE
        )
    bad_search, bad_seeds = _trial("search"), _trial("seeds")
    for trial in (bad_search, bad_seeds):
        scheduler.on_trial_add(None, trial)
    assert (
        scheduler.on_trial_result(None, bad_search, {"training_iteration": 1, "psnr_mean": 5.0}) == TrialScheduler.STOP
    )
    assert (
        scheduler.on_trial_result(None, bad_seeds, {"training_iteration": 1, "psnr_mean": 5.0})
        == TrialScheduler.CONTINUE
    )
    scheduler.on_trial_complete(None, bad_seeds, {"training_iteration": 8, "psnr_mean": 5.0})


def test_what_it_owes_the_cluster_follows_the_stages(tmp_path):
    """`owed`: what an autoscaler is asked for beyond the live trials (scheduling.Demand)."""
    searcher = _searcher(tmp_path, max_seeds=3)  # 4 search trials, then 2 seeds trials for each of 2 sizes
    assert searcher.owed() == 4 + 2 * 2
    searcher.suggest("s0")
    assert searcher.owed() == 3 + 2 * 2
    _through_seeds(searcher, {2: [18.0, 18.8], 8: [18.5, 19.3]})  # a close call: racing follows
    assert searcher.owed() == 0  # every seeds trial handed out; racing starts once they are in
    searcher.suggest("r0")
    assert searcher.owed() == 1  # the other contender's room up to --max-seeds 3
    searcher.suggest("r1")
    assert searcher.owed() == 0
    (tmp_path / "capped").mkdir()
    capped = _searcher(tmp_path / "capped", max_seeds=3, max_trials=9)  # room for one racing trial
    _through_seeds(capped, {2: [18.0, 18.8], 8: [18.5, 19.3]})
    capped.suggest("r0")
    assert capped.owed() == 0  # the other contender has room, but --max-trials is reached
