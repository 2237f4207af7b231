"""What a run prints and writes while it works (`search.engine.progress`), on hand-built trial
records: the live paths are in test_session.py and test_experiment.py."""

import json
from types import SimpleNamespace

from analysis.racing import Race
from search.engine.progress import Progress, trial_lines
from search.store.race import RaceState


def _trial(trial_id, status, stage="seeds", seeds=None, **result):
    return SimpleNamespace(
        trial_id=trial_id,
        status=status,
        config={"stage": stage, "latent_dim": result.get("latent_dim", 5), **({"seeds": seeds} if seeds else {})},
        last_result=result,
        error_file=None,
        storage=SimpleNamespace(experiment_driver_staging_path="/nonexistent/staging"),
    )


def trial_line(trial):
    (line,) = trial_lines(trial)
    return line


def test_a_finished_trial_is_one_line():
    line = trial_line(
        _trial("ab12", "TERMINATED", latent_dim=10, lr=2e-3, seed=7, epoch=4, max_epochs=4, psnr_mean=21.234)
    )
    assert line == "  seeds trial ab12: latent 10 lr 2.00e-03 seed 7 epochs 4/4 val PSNR 21.23 dB"
    latent = trial_line(
        _trial(
            "ab12",
            "TERMINATED",
            latent_dim=10,
            lr=2e-3,
            seed=7,
            epoch=4,
            max_epochs=4,
            psnr_mean=21.234,
            active_units=9,
            nll_iw=101.456,
        )
    )
    assert (
        latent
        == "  seeds trial ab12: latent 10 lr 2.00e-03 seed 7 epochs 4/4 val PSNR 21.23 dB active 9/10 nll_iw 101.46"
    )
    restored = trial_line(
        _trial(
            "cd34", "TERMINATED", latent_dim=10, lr=2e-3, seed=7, epoch=4, max_epochs=4, psnr_mean=21.0, restored=True
        )
    )
    assert restored.endswith("(had finished before the restart; not trained again)")
    diverged = trial_line(_trial("ef56", "TERMINATED", stage="search", latent_dim=5, lr=1e-2, diverged=True))
    assert diverged == "  search trial ef56: latent 5 lr 1.00e-02 diverged"


def test_a_fused_trial_is_a_line_per_member_with_its_own_seed_and_metrics():
    members = {"0": {"seed": 7, "epoch": 4, "psnr_mean": 21.0, "diverged": False},
               "1": {"seed": 9, "epoch": 2, "psnr_mean": 0.0, "diverged": True}}
    trial = _trial("ab12", "TERMINATED", seeds=[7, 9], latent_dim=10, lr=2e-3, max_epochs=4, epoch=4, psnr_mean=21.0,
                   members=members)
    assert trial_lines(trial) == ["  seeds trial ab12-0: latent 10 lr 2.00e-03 seed 7 epochs 4/4 val PSNR 21.00 dB",
                                  "  seeds trial ab12-1: latent 10 lr 2.00e-03 diverged"]


def test_status_json_shows_the_searchers_race_from_memory(tmp_path, capsys):
    race = RaceState(stage="racing", race=Race(latent_dim=10, confidence=0.71, contenders=(10, 15)), target=0.9)
    progress = Progress(str(tmp_path), SimpleNamespace(race=race), storage_uri=None, minimum_trials=6, epochs=4,
                        per_trial={"cpus": 1, "gpus": 0, "max_concurrent": 2})
    trials = [_trial("a", "TERMINATED", latent_dim=10, epoch=4, psnr_mean=21.0, time_total_s=10.0),
              _trial("b", "TERMINATED", latent_dim=15, epoch=2, psnr_mean=20.0, time_total_s=5.0),
              _trial("c", "RUNNING", latent_dim=15, epoch=1, psnr_mean=19.0),
              # a fused trial of two seeds counts as two trials
              _trial("d", "RUNNING", seeds=[1, 2], latent_dim=15, epoch=1, psnr_mean=18.5,
                     members={"0": {"epoch": 1, "psnr_mean": 18.0}, "1": {"epoch": 1, "psnr_mean": 19.5}})]
    progress.on_experiment_end(trials)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["stage"] == "racing" and status["latent_dim"] == 10 and status["contenders"] == [10, 15]
    assert status["trials"]["completed"] == 1 and status["trials"]["stopped"] == 1 and status["trials"]["running"] == 3
    assert status["best_psnr"] == {"10": 21.0, "15": 20.0}
    assert "choice 10 at confidence 0.71" in capsys.readouterr().out


def test_tunes_error_for_its_own_vanished_temp_file_is_dropped_and_others_pass():
    import logging

    from search.engine.session import VANISHED_TEMP_FILE

    def record(message, error):
        return logging.LogRecord("ray.tune", logging.ERROR, __file__, 1, message, None,
                                 (type(error), error, None) if error else None)

    vanished = FileNotFoundError(
        2, "Failed to open local file '/tmp/ray/x/driver_artifacts/.1a2b-tmp-searcher-state-1.pkl'"
    )
    assert not VANISHED_TEMP_FILE.filter(
        record("Saving experiment state to storage at '/e/tune' failed with exception: ", vanished)
    )
    assert VANISHED_TEMP_FILE.filter(record("Saving experiment state to storage at '/e/tune' failed with exception: ",
                                            FileNotFoundError(2, "No such file: '/e/tune/experiment_state.json'")))
    assert VANISHED_TEMP_FILE.filter(record("Trial failed", vanished)) and VANISHED_TEMP_FILE.filter(
        record("other", None)
    )
