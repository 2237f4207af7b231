"""The searcher's bookkeeping alone (search.engine.stages): which stage hands out the next trial,
how a trial ended, the learning rate a size's seeds use, their seeds, and what the run still owes.
Pure: no Ray, no Optuna."""

import math

from search.config import SearchConfig
from search.engine.stages import Action, Ledger, trial_seed

CONFIG = SearchConfig(latent_dims=(2, 8), trials=2, seeds=2, max_seeds=3, epochs=4, lr_range=(1e-3, 1e-2), seed=0)


def test_search_then_each_sizes_seeds_once_its_search_trials_are_done_then_racing():
    ledger = Ledger()
    assert ledger.next_action(CONFIG) == Action("search")
    ledger.record("a", "search", 2, 1e-3, 0)
    ledger.record("b", "search", 8, 2e-3, 0)
    assert ledger.next_action(CONFIG) == Action("wait")  # every size has a search trial running
    ledger.finish("b", {"epoch": 4, "psnr_mean": 12.0}, error=False, max_epochs=4)
    assert ledger.next_action(CONFIG) == Action("seeds", 8)
    for k in range(2):
        ledger.seed_for(f"s{k}", "seeds", 8, CONFIG)
    assert ledger.next_action(CONFIG) == Action("wait")
    ledger.finish("a", {"epoch": 4, "psnr_mean": 11.0}, error=False, max_epochs=4)
    for k in range(2):
        ledger.seed_for(f"t{k}", "seeds", 2, CONFIG)
    for trial_id in ("s0", "s1", "t0", "t1"):
        ledger.finish(trial_id, {"epoch": 4, "psnr_mean": 13.0, "nll_iw": 90.0}, error=False, max_epochs=4)
    assert ledger.next_action(CONFIG) == Action("race")
    assert ledger.evidence("psnr") == {8: [13.0, 13.0], 2: [13.0, 13.0]} and ledger.evidence("nll")[2] == [90.0, 90.0]


def test_how_a_trial_ended_is_the_layouts_outcome():
    ledger = Ledger()
    for trial_id in "abcd":
        ledger.record(trial_id, "search", 2, 1e-3, 0)
    assert ledger.finish("a", {"epoch": 4}, error=False, max_epochs=4).state == "completed"
    assert ledger.finish("b", {"training_iteration": 2}, error=False, max_epochs=4).state == "stopped"
    assert ledger.finish("c", {}, error=True, max_epochs=4).state == "errored"
    assert ledger.finish("d", {"epoch": 1, "diverged": True}, error=False, max_epochs=4).state == "diverged"
    assert ledger.finish("unknown", {}, error=False, max_epochs=4) is None


def test_a_sizes_seeds_use_its_best_search_lr_and_the_runs_kth_seed():
    ledger = Ledger()
    for trial_id, lr, epochs, psnr in (("a", 1e-3, 4, 12.0), ("b", 2e-3, 4, 13.0), ("c", 5e-3, 2, 20.0)):
        ledger.record(trial_id, "search", 2, lr, 0)
        ledger.finish(trial_id, {"epoch": epochs, "psnr_mean": psnr}, error=False, max_epochs=4)
    first = ledger.seed_for("s", "seeds", 2, CONFIG)
    assert first.lr == 2e-3 and first.seed == trial_seed(0, 1)  # most epochs first, then PSNR: not the stopped 20 dB
    assert ledger.seed_for("r", "racing", 2, CONFIG).seed == trial_seed(0, 2)
    assert Ledger().best_lr(8, (1e-3, 1e-2)) == math.sqrt(1e-3 * 1e-2)  # no search trial: the range's middle


def test_runs_with_different_seeds_share_no_trial_seed():
    seeds = {(run, k): trial_seed(run, k) for run in range(100) for k in range(1, 9)}
    assert len(set(seeds.values())) == len(seeds)  # --seed 0 and --seed 3 no longer share seed 4
    assert trial_seed(3, 1) == trial_seed(3, 1) and all(0 <= s < 2**32 for s in seeds.values())


def test_what_is_owed_counts_the_search_the_seeds_and_the_contenders_room():
    ledger = Ledger()
    assert ledger.owed(CONFIG, None) == 2 + 2 * 2
    for k in range(2):
        ledger.seed_for(f"s{k}", "seeds", 2, CONFIG)
    assert ledger.owed(CONFIG, None) == 2 + 2
    assert ledger.owed(CONFIG, (2, 8)) == 2 + 2 + (3 - 2) + 3
    capped = SearchConfig(**{**CONFIG.to_dict(), "max_trials": 7})
    assert ledger.owed(capped, (2, 8)) == 7 - 2


def test_a_fused_hand_out_is_one_trial_of_members_each_a_trial_of_its_own():
    import dataclasses

    from search.engine.stages import split_members

    fused = dataclasses.replace(CONFIG, fuse_seeds=4, max_seeds=5, max_trials=9)
    ledger = Ledger()
    for trial_id, dim in (("a", 2), ("b", 8)):
        ledger.record(trial_id, "search", dim, 1e-3, 0)
        ledger.finish(trial_id, {"epoch": 4, "psnr_mean": 12.0}, error=False, max_epochs=4)
    config = ledger.hand_out("g", "seeds", 8, fused)  # --seeds 2: a group of 2, not 4
    assert config["seeds"] == [trial_seed(0, 1), trial_seed(0, 2)] and config["seed"] == trial_seed(0, 1)
    assert ledger.groups == {"g": ["g-0", "g-1"]} and ledger.count("seeds", 8) == 2
    assert ledger.next_action(fused) == Action("seeds", 2)
    result = {"epoch": 4, "members": {"0": {"epoch": 4, "psnr_mean": 13.0}, "1": {"epoch": 2, "diverged": True}}}
    ledger.finish("g", result, error=False, max_epochs=4)
    assert ledger.trials["g-0"].state == "completed" and ledger.trials["g-1"].state == "diverged"
    assert ledger.evidence("psnr") == {8: [13.0]}
    # Ray Tune hands a searcher the result flattened: the same members
    flat = Ledger()
    flat.hand_out("h", "seeds", 8, fused)
    flat.finish("h", {"members/0/epoch": 4, "members/0/psnr_mean": 11.0, "members/1/epoch": 4,
                      "members/1/psnr_mean": 12.0}, error=False, max_epochs=4)
    assert flat.evidence("psnr") == {8: [11.0, 12.0]}
    # racing: at most --fuse-seeds, within --max-seeds (5) and --max-trials (9)
    assert "seeds" not in ledger.hand_out("r", "racing", 2, dataclasses.replace(fused, fuse_seeds=1))
    assert len(ledger.hand_out("q", "racing", 8, fused)["seeds"]) == 3  # 2 of 8's 5 handed out, 5 trials so far
    assert "seeds" not in ledger.hand_out("z", "racing", 2, fused)  # 8 trials so far: room for one
    members = split_members("q", {"seeds": [1, 2, 3], "latent_dim": 8}, {"time_total_s": 9.0, "node": "n",
                                                                         "members": {"1": {"psnr_mean": 5.0}}})
    assert [(m, c["seed"]) for m, c, _ in members] == [("q-0", 1), ("q-1", 2), ("q-2", 3)]
    assert members[1][2] == {"time_total_s": 3.0, "node": "n", "psnr_mean": 5.0} and "psnr_mean" not in members[0][2]
