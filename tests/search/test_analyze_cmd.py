"""`vae-search analyze` on a real smoke experiment: selection.json, figures, best_model, report."""

import json
import shutil

import matplotlib.image as mpimg
import pandas as pd
import pytest
import torch

import vae
from tests.search.helpers import main_cli

pytestmark = pytest.mark.slow  # real Ray or the command line end to end

FIGURES = [
    "mse_by_digit",
    "psnr_by_digit",
    "loss_curves",
    "latent_tsne",
    "reconstructions",
    "psnr_vs_latent",
    "search_history",
    "race",
    "nll_vs_latent",
    "active_units",
    "kl_by_dim",
]


def test_selection_json_follows_the_contract(analyzed):
    path, result = analyzed
    selection = json.loads((path / "selection.json").read_text())
    assert {"latent_dim", "rule", "best_trial_id", "per_latent_dim", "test", "confidence", "stop_reason"} <= set(
        selection
    )
    assert 0 <= selection["confidence"] <= 1
    assert selection["stop_reason"] == json.loads((path / "race.json").read_text())["stop_reason"]
    assert selection["latent_dim"] in (2, 8)
    assert (
        selection["rule"].startswith("tolerance: ") and "within 0.3 dB of the best" in selection["rule"]
    )  # the run's rule
    race = json.loads((path / "race.json").read_text())
    # analyze recomputes the run's decision from trials.csv: the same choice and confidence
    assert (selection["latent_dim"], selection["confidence"]) == (race["latent_dim"], race["confidence"])
    assert "close_call" in selection and sum(selection["p_answer"].values()) == pytest.approx(1.0)
    trials = pd.read_csv(path / "trials.csv")
    seeds = trials[(trials["phase"] == "seeds") & (trials["status"] == "completed")].groupby("latent_dim").size()
    for entry in selection["per_latent_dim"]:
        assert {"latent_dim", "n_trials", "psnr_mean", "psnr_se", "mse_mean"} <= set(entry)
        assert entry["n_trials"] == seeds[entry["latent_dim"]]
    test = selection["test"]
    assert len(test["mse_by_digit"]) == 10 and len(test["psnr_by_digit"]) == 10
    assert 8 < test["psnr_mean"] < 25
    trials = pd.read_csv(path / "trials.csv")
    chosen = trials[trials["trial_id"] == selection["best_trial_id"]].iloc[0]
    assert chosen["phase"] == "seeds" and chosen["latent_dim"] == selection["latent_dim"]
    assert f"chosen latent size: {selection['latent_dim']} (confidence {selection['confidence']:.2f})" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == f"report: {path / 'report.html'}"
    # both answers side by side, and what each size uses of its latent space
    assert selection["metric"] == "psnr" and set(selection["answers"]) == {"psnr", "nll"}
    assert selection["answers"]["psnr"] == {
        "latent_dim": selection["latent_dim"],
        "confidence": selection["confidence"],
    }
    assert "answers by metric: mean PSNR" in result.stdout
    for dim in (2, 8):
        seeds_of = trials[
            (trials["phase"] == "seeds") & (trials["latent_dim"] == dim) & (trials["status"] == "completed")
        ]
        mean = seeds_of["active_units"].mean()
        assert f"latent {dim} uses {mean:.1f}" in result.stdout and f"of its {dim} dimensions" in result.stdout
    use = selection["chosen_latent_use"]
    assert len(use["kl_by_dim"]) == selection["latent_dim"] and use["active_threshold"] == 0.01
    assert use["active_units"] == sum(v > 0.01 for v in use["mu_var_by_dim"])


def test_seeds_trials_carry_nll_iw_and_every_trial_its_active_units(smoke):
    path, _ = smoke
    trials = pd.read_csv(path / "trials.csv")
    history = pd.read_csv(path / "history.csv")
    seeds = trials[(trials["phase"] == "seeds") & (trials["status"] == "completed")]
    # the smoke preset: 4 importance samples on 200 validation images, after the last epoch only
    assert seeds["nll_iw"].notna().all() and (seeds["iw_samples"] == 4).all() and (seeds["iw_images"] == 200).all()
    assert (seeds["nll_iw"] > 0).all() and (seeds["iw_time_s"] > 0).all()
    assert trials.loc[trials["phase"] == "search", "nll_iw"].isna().all()
    done = trials[trials["status"] == "completed"]
    assert done["active_units"].between(0, done["latent_dim"]).all() and (done["active_threshold"] == 0.01).all()
    assert history["active_units"].notna().all() and history["active_units"].le(history["latent_dim"]).all()
    # the final epoch's KL and posterior-mean variance per dimension stay with the trial's result
    trial = seeds.iloc[0]
    results = [
        json.loads(line)
        for line in (path / "tune" / f"trial_{trial['trial_id']}" / "result.json").read_text().splitlines()
    ]
    assert len(results[-1]["kl_by_dim"]) == len(results[-1]["mu_var_by_dim"]) == trial["latent_dim"]
    assert results[-1]["active_units"] == sum(v > 0.01 for v in results[-1]["mu_var_by_dim"])
    assert "kl_by_dim" not in results[0]  # earlier epochs keep theirs in the checkpoint's history


def test_reanalysis_by_nll_races_the_held_out_likelihood_and_replaces_files_whole(analyzed, tmp_path):
    path, _ = analyzed
    copy = tmp_path / "by-nll"
    shutil.copytree(path, copy)  # analyzed already: every file is written a second time
    result = main_cli("analyze", str(copy), "--metric", "nll", "--rule", "tolerance", "--tolerance-nats", "0.5")
    assert result.returncode == 0, result.stderr
    assert not [p for p in copy.rglob(".*") if p.name.endswith(".tmp") or ".best_model" in p.name]
    selection = json.loads((copy / "selection.json").read_text())
    trials = pd.read_csv(copy / "trials.csv")
    seeds = trials[(trials["phase"] == "seeds") & (trials["status"] == "completed")]
    means = seeds.groupby("latent_dim")["nll_iw"].mean()
    best = int(means.idxmin())
    expected = min(int(d) for d, m in means.items() if m <= means.min() + 0.5)  # the rule on nll, by hand
    assert selection["metric"] == "nll" and selection["latent_dim"] == expected
    assert selection["best_latent_dim"] == best and "nll_iw is within 0.5 nats of the best" in selection["rule"]
    assert list(selection["answers"]) == ["nll", "psnr"]
    assert selection["answers"]["psnr"]["latent_dim"] == json.loads((path / "selection.json").read_text())["latent_dim"]
    chosen = trials[trials["trial_id"] == selection["best_trial_id"]].iloc[0]  # the size's lowest-nll seeds trial
    assert chosen["nll_iw"] == seeds.loc[seeds["latent_dim"] == expected, "nll_iw"].min()
    assert f"chosen latent size: {expected} (confidence {selection['confidence']:.2f})" in result.stdout
    assert "answers by metric: nll_iw" in result.stdout


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_written_and_not_blank(analyzed, name):
    path, _ = analyzed
    pixels = mpimg.imread(path / "figures" / f"{name}.png")
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 0.02


def test_best_model_loads_and_reconstructs(analyzed):
    path, _ = analyzed
    selection = json.loads((path / "selection.json").read_text())
    model = vae.load_model(path / "best_model")
    assert model.latent_dim == selection["latent_dim"]
    x = torch.rand(3, 1, 28, 28)
    out = model.reconstruct(x)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert sorted(p.name for p in (path / "best_model").iterdir()) == ["config.json", "model.pt"]
    torch.load(path / "best_model" / "model.pt", weights_only=True)


def test_analyze_bad_input(tmp_path, analyzed):
    missing = main_cli("analyze", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    path, _ = analyzed
    bad_rule = main_cli("analyze", str(path), "--rule", "vibes")
    assert bad_rule.returncode == 2 and "--rule" in bad_rule.stderr
    foreign = tmp_path / "foreign"
    shutil.copytree(path, foreign)
    (foreign / "optuna.journal").write_text("trial,value\n1,2.0\n")
    result = main_cli("analyze", str(foreign))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"vae-search: error: {foreign / 'optuna.journal'} is not an Optuna journal (its first line is not a journal "
        "record); "
        "restore the experiment's own optuna.journal"
    ]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(path, unfinished)
    (unfinished / "trials.csv").unlink()
    result = main_cli("analyze", str(unfinished))
    assert result.returncode == 2 and "trials.csv" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_nll_on_an_experiment_without_it_is_refused_and_changes_nothing(tmp_path, analyzed):
    path, _ = analyzed
    older = tmp_path / "older"  # as a release before nll_iw wrote it: no such column
    shutil.copytree(path, older)
    table = pd.read_csv(older / "trials.csv")
    table.drop(columns=["nll_iw", "iw_samples", "iw_images", "iw_time_s"]).to_csv(older / "trials.csv", index=False)
    before = {p: p.read_bytes() for p in older.rglob("*") if p.is_file()}
    result = main_cli("analyze", str(older), "--metric", "nll")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "vae-search: error: no latent size has a completed seeds trial with nll_iw; nothing to select from "
        "(runs of releases before nll_iw have none: use --metric psnr)"]
    assert {p: p.read_bytes() for p in older.rglob("*") if p.is_file()} == before
    bad = main_cli("analyze", str(older), "--metric", "ssim")
    assert bad.returncode == 2 and "--metric" in bad.stderr
    # by PSNR it still works, with the one answer it can give
    assert main_cli("analyze", str(older)).returncode == 0
    assert list(json.loads((older / "selection.json").read_text())["answers"]) == ["psnr"]
