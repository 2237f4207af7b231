"""A search whose seeds trials are fused (`--fuse-seeds 2`), end to end on a running Ray (the
worker's `ray_head`): one Tune trial trains two seeds of a size together, and every seed is still
a trial of its own in trials.csv, history.csv, the printed lines, status.json, the decision and the
exported model; the finished search leaves nothing on the cluster."""

import json

import pandas as pd
import pytest

from analysis.layout import COLUMNS
from search.engine.stages import trial_seed
from tests.search.helpers import JOINING, left_on, main_cli, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fused")]


@pytest.fixture(scope="module")
def fused(tmp_path_factory, ray_head):
    storage = tmp_path_factory.mktemp("fused")
    # a target two seeds cannot reach: racing hands out each size's last two seeds as a fused trial too
    result = run_cli("run", "--preset", "smoke", "--address", ray_head, "--fuse-seeds", "2", "--max-seeds", "4",
                     "--confidence", "0.999", "--storage", str(storage), "--name", "f", "--seed", "5", env=JOINING)
    assert result.returncode == 0, result.stderr[-3000:]
    return storage / "f", result.stdout, left_on(ray_head)


def test_a_finished_search_leaves_nothing_on_the_cluster(fused):
    # its trial actors, their placement groups, the data it put in the object store: all gone, so
    # that searches in a row on one cluster start as the first did
    assert fused[2] == {"actors": 0, "placement_groups": 0, "cpus_in_use": 0, "object_store_bytes_in_use": 0}


def test_each_seed_of_a_fused_trial_is_a_row_of_its_own(fused):
    experiment, printed, _ = fused
    assert json.loads((experiment / "run.json").read_text())["config"]["fuse_seeds"] == 2
    table = pd.read_csv(experiment / "trials.csv")
    assert list(table.columns) == list(COLUMNS)
    seeds = table[table["phase"] == "seeds"]
    first = seeds[seeds["stage"] == "seeds"]
    assert len(first) == 4  # --seeds 2 for each of the two sizes: one fused trial of two per size
    for _, group in first.groupby("latent_dim"):
        (tune_id,) = {t.rsplit("-", 1)[0] for t in group["trial_id"]}  # one Tune trial
        assert sorted(group["trial_id"]) == [f"{tune_id}-{i}" for i in (0, 1)]
        # the seeds a run without fusing gives its first two seeds trials of every size
        assert sorted(group["seed"]) == sorted(trial_seed(5, k) for k in (1, 2))
        assert (group["status"] == "completed").all() and group["psnr_mean"].notna().all()
        assert group["nll_iw"].notna().all() and group["psnr_mean"].nunique() == 2  # each its own model
    racing = seeds[seeds["stage"] == "racing"]
    assert len(racing) == 4 and racing.groupby("latent_dim").size().tolist() == [2, 2]
    assert sorted(seeds["seed"].unique()) == sorted(trial_seed(5, k) for k in (1, 2, 3, 4))
    assert all("-" in t for t in seeds["trial_id"])
    for trial_id in first["trial_id"]:
        assert f" trial {trial_id}: latent " in printed
    history = pd.read_csv(experiment / "history.csv")
    for trial_id, group in history[history["trial_id"].isin(first["trial_id"])].groupby("trial_id"):
        assert sorted(group["epoch"]) == [1, 2], trial_id
        last = group[group["epoch"] == 2].iloc[0]
        assert last["psnr_mean"] == pytest.approx(first.set_index("trial_id").loc[trial_id, "psnr_mean"])


def test_the_decision_status_and_exported_model_see_every_seed(fused):
    experiment, _, _ = fused
    table = pd.read_csv(experiment / "trials.csv")
    status = json.loads((experiment / "status.json").read_text())
    assert status["trials"]["done"] == len(table)
    race = json.loads((experiment / "race.json").read_text())
    seeds = table[table["phase"] == "seeds"]
    assert race["n_trials"] == {str(d): int(n) for d, n in seeds.groupby("latent_dim").size().items()}
    analyzed = main_cli("analyze", str(experiment))
    assert analyzed.returncode == 0, analyzed.stderr[-2000:]
    selection = json.loads((experiment / "selection.json").read_text())
    chosen = selection.get("selection", selection)
    best = table.set_index("trial_id").loc[chosen["best_trial_id"]]
    assert best["phase"] == "seeds" and "-" in chosen["best_trial_id"]  # a fused trial's member
    import vae

    model = vae.load_model(experiment / "best_model")
    assert model.latent_dim == best["latent_dim"] == chosen["latent_dim"]
