"""What the commands print (`search.cli.output`) and folders written whole (`search.store.folders`)."""

import re

import pandas as pd
import pytest

from analysis.layout import COLUMNS
from analysis.racing import Race
from search.cli.output import default_name, one_line, report
from search.store.folders import new_folder
from search.store.race import RaceState
from vae.errors import UsageError


def _experiment(tmp_path):
    rows = [
        {c: None for c in COLUMNS}
        | {
            "trial_id": f"t{i}",
            "phase": "seeds",
            "stage": "seeds",
            "status": "completed",
            "latent_dim": d,
            "psnr_mean": p,
            "lr": 1e-3,
            "val_loss": 100.0,
            "mse_mean": 0.01,
            "time_s": 1.0,
            "seed": i,
            "epochs": 2,
        }
        for i, (d, p) in enumerate([(5, 20.0), (10, 21.2), (10, 21.0)])
    ]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "trials.csv", index=False)
    return tmp_path


def test_the_report_ends_with_the_decision_then_the_experiment(tmp_path, capsys):
    race = Race(latent_dim=10, confidence=0.934, contenders=(10,), best_latent_dim=10, mean={5: 20.0, 10: 21.1})
    report(_experiment(tmp_path), RaceState(stage="done", race=race, stop_reason="confidence"))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2:] == ["chosen latent size: 10 (confidence 0.93)", f"experiment: {tmp_path}"]
    assert lines[0].split()[:3] == ["trial_id", "stage", "status"] and len(lines) == 1 + 3 + 2


def test_a_close_call_is_said_before_the_choice(tmp_path, capsys):
    race = Race(latent_dim=10, confidence=0.9, contenders=(10, 15), best_latent_dim=15, mean={10: 21.0, 15: 21.1},
                rule="tolerance", tolerance_db=0.3)
    report(_experiment(tmp_path), RaceState(stage="done", race=race))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3].startswith("close call: latent sizes 10 and 15 are within 0.3 dB") and "0.10 dB apart" in lines[-3]


def test_no_decision_says_why(tmp_path, capsys):
    report(_experiment(tmp_path), RaceState(stage="done", stop_reason="budget"))
    assert capsys.readouterr().out.strip().splitlines()[-2] == "chosen latent size: none (budget)"


def test_names_and_one_line_errors():
    assert re.fullmatch(r"search-\d{8}-\d{6}", default_name("search"))
    assert one_line(UsageError("a\n  b\tc ")) == "a b c"


def test_a_folder_is_written_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with new_folder(tmp_path / "out") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with new_folder(tmp_path / "out") as tmp:
        (tmp / "whole.txt").write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (tmp_path / "out" / "whole.txt").read_text() == "x"
    with pytest.raises(UsageError, match="already exists"):
        with new_folder(tmp_path / "out"):
            pass
