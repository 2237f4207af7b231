"""The status snapshot and its text, on hand-built trials (the live paths: test_session.py,
test_experiment.py and test_storage_s3.py)."""

import json
import time

import pytest

from analysis.racing import Race
from search.store.race import RaceState
from search.store.status import format_status, mark_stopped, one_line, read, snapshot, write


def _trials():
    return [
        {"status": "TERMINATED", "latent_dim": 5, "psnr": 15.0, "epochs": 4, "max_epochs": 4, "seconds": 10.0},
        {
            "status": "TERMINATED",
            "latent_dim": 5,
            "psnr": 16.0,
            "epochs": 2,
            "max_epochs": 4,
            "seconds": 4.0,
        },  # stopped by ASHA
        {
            "status": "TERMINATED",
            "latent_dim": 10,
            "psnr": 0.0,
            "diverged": True,
            "epochs": 1,
            "max_epochs": 4,
            "seconds": 1.0,
        },
        {"status": "ERROR", "latent_dim": 10, "psnr": None},
        {"status": "RUNNING", "latent_dim": 10, "psnr": 17.5},
        {"status": "PENDING", "latent_dim": 15, "psnr": None},
    ]


def test_snapshot_counts_bests_and_eta():
    race = RaceState(stage="seeds", race=Race(latent_dim=5, confidence=0.8, contenders=(5, 10)), target=0.9)
    status = snapshot(_trials(), minimum_trials=10, slots=2, elapsed_s=30.0, race=race)
    assert status["trials"] == {
        "done": 4,
        "completed": 1,
        "stopped": 1,
        "diverged": 1,
        "errored": 1,
        "running": 1,
        "pending": 1,
    }
    assert status["best_psnr"] == {"5": 16.0, "10": 17.5}  # a diverged trial's 0 dB is not a best
    # 6 trials left of at least 10, 5 s each on average, 2 slots
    assert status["eta_s"] == pytest.approx(6 * 5.0 / 2)
    assert status["stage"] == "seeds" and status["confidence"] == 0.8 and status["contenders"] == [5, 10]
    line = one_line(status)
    assert (
        "4/10+ trials done" in line and "1 running" in line and "choice 5 at confidence 0.80" in line and "ETA" in line
    )
    # before a second seed of any size, the decision has no spread to go on: no choice is shown yet
    early = RaceState(stage="seeds", race=Race(latent_dim=5, confidence=0.0, contenders=(5, 10)), target=0.9)
    line = one_line(snapshot(_trials(), minimum_trials=10, slots=2, elapsed_s=30.0, race=early))
    assert "choice pending" in line and "choice 5" not in line


def test_read_says_done_stopped_or_running_from_the_files(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"done": False}))
    assert read(str(tmp_path))["state"] == "not started"
    status = snapshot(_trials(), minimum_trials=10, slots=2, elapsed_s=30.0, race=RaceState())
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert read(str(tmp_path))["state"] == "running"
    (tmp_path / "status.json").write_text(json.dumps({**status, "updated_at": time.time() - 3600}))
    stale = read(str(tmp_path))
    assert stale["state"] == "stopped" and "may have stopped" in format_status(stale)
    write(tmp_path, status)
    mark_stopped(tmp_path, "SIGINT")  # what the driver writes as it stops: the snapshot kept, the reason added
    stopped = read(str(tmp_path))
    assert (
        stopped["state"] == "stopped" and "SIGINT" in format_status(stopped) and stopped["trials"] == status["trials"]
    )
    (tmp_path / "status.json").write_text("{torn")
    mark_stopped(tmp_path, "SIGTERM")  # a stopping run does not fail on a torn status file
    assert (tmp_path / "status.json").read_text() == "{torn"
    (tmp_path / "run.json").write_text(json.dumps({"done": True}))
    (tmp_path / "race.json").write_text(
        json.dumps({"stage": "done", "latent_dim": 5, "confidence": 0.95, "stop_reason": "confidence"})
    )
    done = read(str(tmp_path))
    assert done["state"] == "done" and done["eta_s"] == 0 and done["latent_dim"] == 5
    assert "racing stopped: confidence" in format_status(done)
