"""Faults injected into real runs: a killed trial worker, a diverging loss, a corrupt write, a
full disk, and a Ray without authentication refused."""

import os
import re
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest

from tests.search.helpers import JOINING, cli_process, main_cli, run_cli, session_processes

pytestmark = pytest.mark.slow  # real Ray or the command line end to end
# the crash run, once for the module: its tests on one pytest worker (make test's --dist loadgroup)
CRASH = pytest.mark.xdist_group("crash")


def _trial_workers(driver, trial_id):
    """The live trial workers (`ray::ImplicitFunc…`) of the driver's session now running
    `trial_id`: Ray Tune moves a worker into the trial's working folder, named after it."""
    found = []
    for pid in session_processes(driver.pid):
        try:
            process = psutil.Process(pid)
            if process.cmdline()[0].startswith("ray::ImplicitFunc") and process.cwd().endswith(f"trial_{trial_id}"):
                found.append(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            continue
    return found


def _kill_trial(driver, experiment, *, other_than=(), deadline_s=120):
    """Once some trial (not in `other_than`) has a checkpoint, SIGKILL its worker: (its id, the pid)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for folder in (experiment / "tune").glob("trial_*"):
            trial_id = folder.name.removeprefix("trial_")
            if trial_id not in other_than and list(folder.glob("checkpoint_*")):
                for pid in _trial_workers(driver, trial_id):
                    os.kill(pid, 9)
                    return trial_id, pid
        time.sleep(0.02)
    return None, None


def _kill_again(driver, trial_id, killed, *, deadline_s=120):
    """SIGKILL `trial_id`'s worker once more, as soon as its retry runs in another process than
    `killed` (which may take a moment to die)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for pid in _trial_workers(driver, trial_id):
            if pid != killed:
                os.kill(pid, 9)
                return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    """One run, two search trials on two CPUs, --max-failures 1: one trial's worker is killed once
    (it is retried from its checkpoint), the other's twice (it has failed for good)."""
    storage = tmp_path_factory.mktemp("crash")
    args = (
        "run",
        "--preset",
        "smoke",
        "--num-cpus",
        "2",
        "--epochs",
        "6",
        "--max-train",
        "1000",
        "--trials",
        "2",
        "--seeds",
        "1",
        "--max-seeds",
        "1",
        "--max-failures",
        "1",
        "--scheduler",
        "fifo",
        "--storage",
        str(storage),
        "--name",
        "crash",
    )
    experiment = storage / "crash"
    with cli_process(*args) as driver:
        retried, _ = _kill_trial(driver, experiment)
        failed, pid = _kill_trial(driver, experiment, other_than=(retried,))
        killed_twice = failed is not None and _kill_again(driver, failed, pid)
        stdout, stderr = driver.communicate(timeout=300)
    assert retried and failed and killed_twice, "the trials finished before their workers could be killed"
    assert driver.returncode == 0, stderr[-3000:]
    return experiment, retried, failed, stdout + stderr


@CRASH
def test_a_crashed_trial_is_retried_from_its_checkpoint(crash):
    experiment, retried, _, console = crash
    table = pd.read_csv(experiment / "trials.csv").set_index("trial_id")
    assert table.loc[retried, "status"] == "completed" and table.loc[retried, "epochs"] == 6
    assert "Failure # 1" in (experiment / "tune" / f"trial_{retried}" / "error.txt").read_text()
    # one line says so; Ray's traceback and its paragraph about the dead worker go to driver.log
    assert re.search(
        rf"trial {retried}: failed \(ActorDiedError: .*\); retry 1 of --max-failures 1, from epoch \d", console
    ), console
    assert "Traceback" not in console and "(raylet)" not in console, console
    assert f"failure of trial {retried}:\nTraceback" in (experiment / "driver.log").read_text()
    # it resumed from its checkpoint: its history has each epoch exactly once
    history = pd.read_csv(experiment / "history.csv")
    assert sorted(history.loc[history["trial_id"] == retried, "epoch"]) == list(range(1, 7))


@CRASH
def test_a_trial_that_keeps_failing_is_errored_and_the_rest_completes(crash):
    experiment, retried, failed, _ = crash
    table = pd.read_csv(experiment / "trials.csv").set_index("trial_id")
    assert table.loc[failed, "status"] == "errored"
    assert isinstance(table.loc[failed, "error"], str) and table.loc[failed, "error"]
    assert (
        "Failure # 2" in (experiment / "tune" / f"trial_{failed}" / "error.txt").read_text()
    )  # --max-failures 1: one retry
    assert (table.drop(index=failed)["status"] == "completed").all()
    analysis = main_cli("analyze", str(experiment))
    assert analysis.returncode == 0, analysis.stderr[-2000:]


def test_diverging_trials_stop_at_once_without_retries(tmp_path, ray_head):
    result = run_cli(
        "run",
        "--preset",
        "smoke",
        "--address",
        ray_head,
        "--lr-range",
        "1e4,1e5",
        "--epochs",
        "3",
        "--trials",
        "2",
        "--seeds",
        "1",
        "--max-seeds",
        "1",
        "--storage",
        str(tmp_path),
        "--name",
        "nan",
        env=JOINING,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = tmp_path / "nan"
    table = pd.read_csv(experiment / "trials.csv")
    assert (table["status"] == "diverged").all()
    assert (table["epochs"] == 1).all()  # stopped in the first epoch
    assert table["error"].str.contains("not finite").all()
    assert not list(experiment.rglob("error.txt"))  # nothing retried
    from search.engine.study import STUDY_NAME, journal_storage

    study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(experiment / "optuna.journal"))
    assert [t.value for t in study.trials] == [0.0] * 2  # Optuna learns these points are bad
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


def test_run_refuses_to_start_ray_without_authentication(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    result = main_cli("run", "--preset", "smoke", "--storage", str(tmp_path / "s"))
    assert result.returncode == 2 and "RAY_AUTH_MODE=disabled" in result.stderr
    assert not (tmp_path / "s").exists()


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode
        != 0
    ):
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


def test_a_full_disk_stops_the_run_with_one_message_and_resume_finishes_it(small_disk, ray_head):
    disk, grow = small_disk
    experiment = disk / "full"
    result = run_cli("run", "--preset", "smoke", "--address", ray_head, "--trials", "2", "--seeds", "1",
                     "--max-seeds", "1", "--storage", str(disk), "--name", "full", env=JOINING)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert lines[0].startswith(
        f"vae-search: stopped: no space left on device in {experiment} (0.0 MB free, the rest of the run needs about "
    )
    log = Path(lines[0].split("; details in ")[1])
    try:
        assert "No space left on device" in log.read_text()
    finally:
        log.unlink()
    assert lines[1] == f"resume with: vae-search resume {experiment} --address {ray_head}"

    grow()  # space freed
    resumed = run_cli("resume", str(experiment), "--address", ray_head, env=JOINING)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    table = pd.read_csv(experiment / "trials.csv")
    # no trial was counted as failed for lack of space (ASHA may still stop a search trial):
    # 2 search trials, the one seeds trial of each size trained to the end
    assert not (table["status"] == "errored").any() and (table["phase"] == "search").sum() == 2
    seeds = table[table["phase"] == "seeds"]
    assert (seeds.groupby("latent_dim").size() == 1).all() and (seeds["status"] == "completed").all()
