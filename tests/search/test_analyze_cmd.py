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

FIGURES = ["mse_by_digit", "psnr_by_digit", "loss_curves", "latent_tsne", "reconstructions", "psnr_vs_latent", "search_history",
           "race"]


def test_selection_json_follows_the_contract(analyzed):
    path, result = analyzed
    selection = json.loads((path / "selection.json").read_text())
    assert {"latent_dim", "rule", "best_trial_id", "per_latent_dim", "test", "confidence", "stop_reason"} <= set(selection)
    assert 0 <= selection["confidence"] <= 1
    assert selection["stop_reason"] == json.loads((path / "race.json").read_text())["stop_reason"]
    assert selection["latent_dim"] in (2, 8)
    assert selection["rule"].startswith("tolerance: ") and "within 0.3 dB of the best" in selection["rule"]  # the run's rule
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


def test_other_rules_and_reanalysis_replace_files_whole(analyzed, tmp_path):
    path, _ = analyzed
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    result = main_cli("analyze", str(copy), "--rule", "tolerance", "--tolerance-db", "100")
    assert result.returncode == 0, result.stderr[-2000:]
    selection = json.loads((copy / "selection.json").read_text())
    assert selection["latent_dim"] == 2 and selection["rule"].startswith("tolerance")
    assert not [p for p in copy.rglob(".*") if p.name.endswith(".tmp") or ".best_model" in p.name]


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
        f"vae-search: error: {foreign / 'optuna.journal'} is not an Optuna journal (its first line is not a journal record); "
        "restore the experiment's own optuna.journal"]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(path, unfinished)
    (unfinished / "trials.csv").unlink()
    result = main_cli("analyze", str(unfinished))
    assert result.returncode == 2 and "trials.csv" in result.stderr and len(result.stderr.strip().splitlines()) == 1
