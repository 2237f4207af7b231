"""Faults injected into real runs: a killed trial worker, a diverging loss, a corrupt write, a
full disk, and a Ray without authentication refused."""

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest

from tests.search.helpers import cli_process, main_cli, run_cli, session_processes

pytestmark = pytest.mark.slow  # real Ray or the command line end to end


def _kill_first_trial_worker(driver, experiment, *, deadline_s=120):
    """Wait until some search trial has a checkpoint, then SIGKILL the worker running trials."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if list((experiment / "tune").glob("trial_*/checkpoint_*")):
            for pid in session_processes(driver.pid):
                try:
                    if psutil.Process(pid).cmdline()[0].startswith("ray::ImplicitFunc"):
                        os.kill(pid, 9)
                        return True
                except (psutil.NoSuchProcess, IndexError):
                    continue
        time.sleep(0.05)
    return False


def test_a_crashed_trial_is_retried_from_its_checkpoint(tmp_path):
    args = ("run", "--preset", "smoke", "--num-cpus", "2", "--epochs", "4", "--max-train", "1000", "--trials", "2",
            "--seeds", "1", "--max-seeds", "1", "--scheduler", "fifo", "--storage", str(tmp_path), "--name", "crash")
    with cli_process(*args) as driver:
        assert _kill_first_trial_worker(driver, tmp_path / "crash")
        stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-3000:]
    table = pd.read_csv(tmp_path / "crash" / "trials.csv")
    assert (table["status"] == "completed").all() and (table["epochs"] == 4).all()
    retried = list((tmp_path / "crash" / "tune").glob("trial_*/error.txt"))
    assert retried, "the killed trial left no failure record"
    assert "Failure # 1" in retried[0].read_text()
    # it resumed from its checkpoint: history has each epoch exactly once
    history = pd.read_csv(tmp_path / "crash" / "history.csv")
    assert (history.groupby("trial_id")["epoch"].apply(lambda e: sorted(e) == list(range(1, 5)))).all()


def test_a_trial_that_keeps_failing_is_errored_and_the_rest_completes(tmp_path):
    args = ("run", "--preset", "smoke", "--num-cpus", "2", "--epochs", "4", "--max-train", "1000", "--trials", "2",
            "--seeds", "1", "--max-seeds", "1", "--max-failures", "0", "--scheduler", "fifo", "--storage", str(tmp_path), "--name", "fail")
    with cli_process(*args) as driver:
        assert _kill_first_trial_worker(driver, tmp_path / "fail")
        stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-3000:]
    table = pd.read_csv(tmp_path / "fail" / "trials.csv")
    errored = table[table["status"] == "errored"]
    assert len(errored) == 1 and isinstance(errored["error"].iloc[0], str) and errored["error"].iloc[0]
    assert (table.loc[table["phase"] == "seeds", "status"] == "completed").all()
    analysis = main_cli("analyze", str(tmp_path / "fail"))
    assert analysis.returncode == 0, analysis.stderr[-2000:]


def test_diverging_trials_stop_at_once_without_retries(tmp_path):
    result = run_cli("run", "--preset", "smoke", "--num-cpus", "2", "--lr-range", "1e4,1e5", "--epochs", "3",
                     "--max-seeds", "2", "--storage", str(tmp_path), "--name", "nan")
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = tmp_path / "nan"
    table = pd.read_csv(experiment / "trials.csv")
    assert (table["status"] == "diverged").all()
    assert (table["epochs"] == 1).all()  # stopped in the first epoch
    assert table["error"].str.contains("not finite").all()
    assert not list(experiment.rglob("error.txt"))  # nothing retried
    from search.engine.searcher import STUDY_NAME, journal_storage

    study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(experiment / "optuna.journal"))
    assert [t.value for t in study.trials] == [0.0] * 3  # Optuna learns these points are bad
    analysis = main_cli("analyze", str(experiment))
    assert analysis.returncode == 2 and "no latent size has a completed seeds trial" in analysis.stderr


def test_an_interrupted_write_keeps_the_previous_file(tmp_path):
    from vae.files import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "trials.csv", "good\n")

    def half_then_crash(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.csv"]


def test_run_refuses_to_start_ray_without_authentication(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    result = subprocess.run([sys.executable, "-m", "search", "run", "--preset", "smoke", "--storage", str(tmp_path / "s")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "RAY_AUTH_MODE=disabled" in result.stderr
    assert not (tmp_path / "s").exists()


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("this machine does not let a test mount a tmpfs")


def test_a_read_only_storage_is_refused_before_ray_starts(tmp_path):
    readonly = tmp_path / "ro"
    _mount_tmpfs(readonly, "ro,size=1m")
    try:
        result = main_cli("run", "--preset", "smoke", "--storage", str(readonly), "--name", "x")
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [
            f"vae-search: error: --storage {readonly} cannot be written ({readonly} is on a read-only file system)"]
        assert "Started a local Ray" not in result.stdout + result.stderr and not list(readonly.iterdir())
    finally:
        subprocess.run(["umount", "-l", str(readonly)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB file system (tmpfs), enlarged later by `grow`; needs root (CI runs as root)."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=1m")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)

    yield disk, grow
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_stops_the_run_with_one_message_and_resume_finishes_it(small_disk):
    disk, grow = small_disk
    experiment = disk / "full"
    result = run_cli("run", "--preset", "smoke", "--num-cpus", "2", "--max-seeds", "2", "--storage", str(disk), "--name", "full")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert lines[0].startswith(f"vae-search: stopped: no space left on device in {experiment} (0.0 MB free, the rest of the "
                               "run needs about ")
    log = Path(lines[0].split("; details in ")[1])
    try:
        assert "No space left on device" in log.read_text()
    finally:
        log.unlink()
    assert lines[1] == f"resume with: vae-search resume {experiment}"

    grow()  # space freed
    resumed = run_cli("resume", str(experiment))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    table = pd.read_csv(experiment / "trials.csv")
    # no trial was counted as failed for lack of space (ASHA may still stop a search trial):
    # 3 search trials, 2-3 seeds trials per size, every seeds trial trained to the end
    assert not (table["status"] == "errored").any() and (table["phase"] == "search").sum() == 3
    seeds = table[table["phase"] == "seeds"]
    assert seeds.groupby("latent_dim").size().between(2, 3).all() and (seeds["status"] == "completed").all()
