"""The trial table as `vae-search trials` reads and prints it (`search.store.table`); the table
Ray Tune's state gives is checked on real runs in test_experiment.py."""

import json

import pandas as pd
import pytest

from analysis.layout import COLUMNS
from search.store.table import format_trials, read_trials
from vae.errors import UsageError


def _table(tmp_path):
    rows = [
        {c: None for c in COLUMNS}
        | {
            "trial_id": f"t{i}",
            "phase": ph,
            "stage": st,
            "status": "completed",
            "latent_dim": d,
            "psnr_mean": p,
            "val_loss": v,
            "lr": 1e-3,
            "seed": i,
            "epochs": 2,
        }
        for i, (ph, st, d, p, v) in enumerate(
            [
                ("search", "search", 5, 19.0, 120.0),
                ("seeds", "seeds", 5, 20.0, 110.0),
                ("seeds", "racing", 10, 21.0, 100.0),
            ]
        )
    ]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "trials.csv", index=False)
    return read_trials(tmp_path)


def test_psnr_sorts_best_first_and_losses_lowest_first(tmp_path):
    table = _table(tmp_path)
    assert [r["trial_id"] for r in json.loads(format_trials(table, sort="psnr_mean", top=None, fmt="json"))] == [
        "t2",
        "t1",
        "t0",
    ]
    csv = format_trials(table, sort="val_loss", top=2, fmt="csv")
    assert pd.read_csv(__import__("io").StringIO(csv))["trial_id"].tolist() == ["t2", "t1"]
    text = format_trials(table, sort="latent_dim", top=1, fmt="table").splitlines()
    assert len(text) == 2 and text[1].split()[:4] == ["t2", "racing", "completed", "10"]


def test_an_unknown_sort_column_names_the_choices(tmp_path):
    with pytest.raises(UsageError, match="--sort 'nope' is not a column; choose from trial_id, phase"):
        format_trials(_table(tmp_path), sort="nope", top=None, fmt="table")


def test_a_corrupt_or_partial_table_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_trials(tmp_path / "nope")
    with pytest.raises(UsageError, match="no trials.csv"):
        read_trials(tmp_path)
    (tmp_path / "trials.csv").write_text("")
    with pytest.raises(UsageError, match="corrupt"):
        read_trials(tmp_path)
    (tmp_path / "trials.csv").write_text("trial_id,phase\nt0,search\n")
    with pytest.raises(UsageError, match="missing column"):
        read_trials(tmp_path)


@pytest.mark.parametrize("stage, expected", [("racing", ["t2"]), ("seeds", ["t1"]), ("search", ["t0"])])
def test_trials_filters_by_stage(tmp_path, stage, expected):
    from tests.search.helpers import main_cli

    _table(tmp_path)
    result = main_cli("trials", str(tmp_path), "--stage", stage, "--format", "json")
    assert result.returncode == 0 and [r["trial_id"] for r in json.loads(result.stdout)] == expected
    none = main_cli("trials", str(tmp_path), "--stage", stage, "--phase", "search" if stage != "search" else "seeds")
    assert none.returncode == 0 and none.stdout.split() == [
        "trial_id",
        "stage",
        "status",
        "latent_dim",
        "lr",
        "seed",
        "epochs",
        "val_loss",
        "mse_mean",
        "psnr_mean",
        "active_units",
        "nll_iw",
        "device",
        "time_s",
    ]
    phase = main_cli("trials", str(tmp_path), "--phase", "seeds", "--format", "json")
    assert sorted(r["trial_id"] for r in json.loads(phase.stdout)) == ["t1", "t2"]
