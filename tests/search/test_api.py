"""Searches from Python (`search.run`, `search.analyze`, `search.Experiment`): two searches in one
process share the Ray the first started, the experiment gives its trials, decision and best
model, and bad arguments raise ValueError naming the offending value."""

import json

import pytest

import search

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("api")]

SMALL = {"num_cpus": 2, "latent_dims": (2, 4), "trials": 2, "seeds": 1, "max_seeds": 1, "epochs": 1, "max_train": 300}


def test_two_searches_in_one_process_share_its_ray_and_give_their_experiments(tmp_path):
    import ray

    try:
        first = search.run(search.resolve("smoke", SMALL), storage=str(tmp_path), name="a")
        assert ray.is_initialized()  # kept for the next search, as Ray Tune leaves it
        gcs = ray.get_runtime_context().gcs_address
        # the second races: a seed more per size once both seeds trials are in
        second = search.run(search.resolve("smoke", {**SMALL, "seed": 1, "max_seeds": 2}), storage=str(tmp_path),
                            name="b")
        assert ray.get_runtime_context().gcs_address == gcs  # the same Ray, joined
        _nothing_lingers()
        pids = {experiment.path.name: _pids(experiment) for experiment in (first, second)}
        for experiment in (first, second):
            assert experiment.done and experiment.decision.done
            assert set(experiment.trials["phase"]) == {"search", "seeds"}
            # one worker process per slot (2 CPUs, one a trial)
            assert len(set(pids[experiment.path.name].values())) <= 2
        assert len(first.trials) == 2 + 2
        # While the searcher waited for both seeds trials' results, Ray Tune kept one idle actor and
        # stopped the other: the two racing trials then ran one after the other in one process.
        # Both actors are kept now (`ray_seam.kept_actors`), and the racing trials run side by side.
        racing = second.trials[second.trials["stage"] == "racing"]
        assert len(racing) == 2 and len(set(racing["trial_id"].map(pids["b"]))) == 2
        assert racing["started_at"].max() < racing["finished_at"].min()
        assert second.trials["seed"].isin(first.trials["seed"]).sum() == 0  # another --seed, other trials
        with pytest.raises(ValueError, match="has no best_model/ yet"):
            second.best_model()
        search.analyze(first)
        model = first.best_model()
        assert model.latent_dim == first.decision.latent_dim
        assert search.Experiment.open(tmp_path / "a").trials.equals(first.trials)
    finally:
        ray.shutdown()


def _pids(experiment) -> dict[str, int]:
    """trial_id -> the process that ran it (Ray Tune's result.json)."""
    results = (json.loads(result.read_text().splitlines()[0]) for result in
               (experiment.path / "tune").glob("trial_*/result.json"))
    return {result["trial_id"]: result["pid"] for result in results}


def _nothing_lingers():
    """No actor alive and every placement group removed once a search has ended."""
    from ray._private import state
    from ray.util import placement_group_table

    assert [a for a in state.actors().values() if a["State"] != "DEAD"] == []
    assert {g["state"] for g in placement_group_table().values()} <= {"REMOVED"}


def test_bad_arguments_raise_value_error_naming_them(tmp_path):
    with pytest.raises(ValueError, match="must be a SearchConfig"):
        search.run({"latent_dims": (2, 4)})
    with pytest.raises(ValueError, match="plain folder name but got 'a/b'"):
        search.run(search.resolve("smoke", SMALL), storage=str(tmp_path), name="a/b")
    with pytest.raises(ValueError, match="latent_dims must be positive integers"):
        search.resolve("smoke", {"latent_dims": (0, 4)})
    with pytest.raises(ValueError, match="analyze takes rule, metric, tolerance_db, tolerance_nats but got colour"):
        search.analyze(tmp_path, colour="red")
    with pytest.raises(ValueError, match="does not exist"):
        search.Experiment.open(tmp_path / "missing")
    assert not list(tmp_path.iterdir())  # nothing written
