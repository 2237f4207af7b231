"""Racing on from a finished experiment (`vae-search resume EXP --max-seeds N`), end to end: one
smoke run on a running Ray (`ray_head`) whose race stops at --max-seeds below its target, bad
race-ons refused without a write, a race-on SIGKILLed mid-race with the local Ray it started (its
whole session killed), then `resume` to the end on the running Ray again."""

import hashlib
import json
import re
import time

import pandas as pd
import pytest

from tests.search.helpers import JOINING, cli_process, kill_session, main_cli, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("race-on")]

# one learning rate and an unreachable target: the race always stops at --max-seeds 2, below it
RUN = ("--preset", "smoke", "--epochs", "3", "--lr-range", "3e-3,3.001e-3", "--confidence", "0.999", "--seeds", "2",
       "--max-seeds", "2")


def _files(folder):
    """Every file in the experiment with a digest of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "driver.lock"}


@pytest.fixture(scope="module")
def raced(tmp_path_factory, ray_head):
    storage = tmp_path_factory.mktemp("race-on")
    experiment = storage / "ro"
    first = run_cli("run", *RUN, "--address", ray_head, "--storage", str(storage), "--name", "ro", env=JOINING)
    assert first.returncode == 0, first.stderr[-3000:]
    before = pd.read_csv(experiment / "trials.csv")

    # bad race-ons: one line, exit 2, nothing written
    earlier = storage / "earlier"
    earlier.mkdir()
    record = json.loads((experiment / "run.json").read_text())
    del record["config"]["race_on_to"]  # made before race-ons were planned for
    (earlier / "run.json").write_text(json.dumps(record))
    unfinished = storage / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(
        json.dumps({**json.loads((experiment / "run.json").read_text()), "done": False})
    )
    files = _files(experiment)
    refused = {
        flags: main_cli("resume", str(experiment), *flags)
        for flags in (("--max-seeds", "1"), ("--max-seeds", "5"), ("--confidence", "0.01"), ("--max-seeds", "0"))
    }
    refused["earlier"] = main_cli("resume", str(earlier), "--max-seeds", "4")
    refused["unfinished"] = main_cli("resume", str(unfinished), "--max-seeds", "4")
    # a race-on writes only once Ray is up: one whose cluster cannot be reached leaves it finished
    refused["unreachable"] = run_cli("resume", str(experiment), "--max-seeds", "4", "--address", "127.0.0.1:1")
    from search.store.lock import hold

    with hold(experiment):
        refused["running"] = main_cli("resume", str(experiment), "--max-seeds", "4")
    unchanged = _files(experiment) == files

    # The experiment folder owns itself: the finished experiment moves before it races on (as after
    # `aws s3 sync` or a rename), and the interrupted race-on moves again before it resumes.
    original = experiment
    experiment = _move(original, storage / "elsewhere" / "ro-moved")
    # race on, killed once its first new trial has a checkpoint
    known = {p.name for p in (experiment / "tune").glob("trial_*")}
    with cli_process("resume", str(experiment), "--max-seeds", "4") as driver:
        deadline, killed = time.monotonic() + 180, False
        while time.monotonic() < deadline and driver.poll() is None and not killed:
            fresh = [
                p for p in (experiment / "tune").glob("trial_*") if p.name not in known and list(p.glob("checkpoint_*"))
            ]
            if fresh:
                kill_session(driver.pid)
                killed = True
            time.sleep(0.02)
        out, _ = driver.communicate(timeout=60)
    assert killed, "the race-on finished before it could be killed"
    interrupted = experiment
    experiment = _move(interrupted, storage / "third" / "ro-again")
    resumed = run_cli("resume", str(experiment), "--address", ray_head, env=JOINING)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    analyzed = main_cli("analyze", str(experiment))
    assert analyzed.returncode == 0, analyzed.stderr[-3000:]
    return {
        "experiment": experiment,
        "original": original,
        "interrupted": interrupted,
        "first": first,
        "address": ray_head,
        "before": before,
        "refused": refused,
        "unchanged": unchanged,
        "killed_output": out,
        "resumed": resumed,
        "analyzed": analyzed,
    }


def _move(folder, target):
    """Copy the experiment to `target` and remove the original."""
    import shutil

    target.parent.mkdir(parents=True)
    shutil.copytree(folder, target, symlinks=True)
    shutil.rmtree(folder)
    return target


def test_a_run_that_stops_below_its_target_says_how_to_race_on(raced):
    lines = raced["first"].stdout.strip().splitlines()
    assert lines[-1] == f"experiment: {raced['original']}"
    # with the cluster it ran on: a plain `resume` would start a Ray of its own on this machine
    assert re.fullmatch(rf"to race on: vae-search resume {re.escape(str(raced['original']))} "
                        rf"--address {re.escape(raced['address'])} --max-seeds 4 "
                        r"\(at most [1-4] more seeds trials, for latent sizes [\d, ]+\)", lines[-2]), lines[-2]


def test_bad_race_ons_exit_2_with_one_line_and_write_nothing(raced):
    refused = raced["refused"]
    for flags, result in refused.items():
        assert result.returncode == 2, (flags, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("vae-search: error: "), (
            flags,
            result.stderr,
        )
    assert "below the 2 this experiment already allowed" in refused[("--max-seeds", "1")].stderr
    assert "above --race-on-to 4" in refused[("--max-seeds", "5")].stderr
    assert "already reaches the target" in refused[("--confidence", "0.01")].stderr
    assert "earlier vae-search" in refused["earlier"].stderr
    assert "has not finished" in refused["unfinished"].stderr
    assert "cannot reach the Ray cluster at --address 127.0.0.1:1" in refused["unreachable"].stderr
    assert "driver" in refused["running"].stderr  # another driver holds the experiment
    assert raced["unchanged"]


def test_racing_on_trains_only_new_seeds_trials_and_survives_a_sigkill(raced):
    experiment, before = raced["experiment"], raced["before"]
    assert "racing on: --max-seeds 4 (before: --max-seeds 2)" in raced["killed_output"]
    after = pd.read_csv(experiment / "trials.csv")
    # every trial of the first run is kept, with its values; nothing of it trained again
    kept = after.set_index("trial_id").loc[before["trial_id"]]
    assert (kept["psnr_mean"].to_numpy() == before.set_index("trial_id")["psnr_mean"].to_numpy()).all()
    new = after[~after["trial_id"].isin(before["trial_id"])]
    assert len(new) >= 1 and (new["stage"] == "racing").all() and (new["status"] == "completed").all()
    assert after[after["stage"].isin(["seeds", "racing"])].groupby("latent_dim").size().max() <= 4
    history = pd.read_csv(experiment / "history.csv")
    assert not history.duplicated(["trial_id", "epoch"]).any()
    # the confidence it reports is the one the same trials give a fresh assessment
    from search.store.record import Experiment

    config = Experiment.open(experiment).config
    race = json.loads((experiment / "race.json").read_text())
    from analysis.answers import values_by_latent_dim

    fresh = config.decision.assess(values_by_latent_dim(after))
    assert race["stage"] == "done" and race["latent_dim"] == fresh.latent_dim
    assert race["confidence"] == pytest.approx(fresh.confidence, abs=1e-4)
    # provenance: the change, and the command that reproduces the whole experiment
    record = json.loads((experiment / "run.json").read_text())
    assert record["done"] and record["config"]["max_seeds"] == 4
    assert [(r["before"], r["after"], r["command"]) for r in record["race_ons"]] == [
        ({"max_seeds": 2}, {"max_seeds": 4}, "vae-search resume EXPERIMENT --max-seeds 4")]
    report = (experiment / "report.html").read_text()
    assert "vae-search resume EXPERIMENT --max-seeds 4" in report


def test_a_moved_experiment_races_on_and_resumes_where_it_is_and_writes_nowhere_else(raced):
    # the race-on ran in the moved folder, was killed, moved again and resumed there (the trials
    # it trained are asserted above); the old places stay empty
    assert not raced["original"].exists() and not raced["interrupted"].exists()
    assert f"experiment: {raced['experiment']}" == raced["resumed"].stdout.strip().splitlines()[-1]
    assert str(raced["original"]) not in raced["resumed"].stdout + raced["analyzed"].stdout
    trials = pd.read_csv(raced["experiment"] / "trials.csv")
    assert all((raced["experiment"] / c).is_dir() for c in trials["checkpoint"])  # relative to where it is now


def test_an_experiment_raced_to_its_limit_offers_no_more(raced):
    assert "to race on:" not in raced["resumed"].stdout  # --max-seeds is at --race-on-to now
    again = main_cli("resume", str(raced["experiment"]), "--max-seeds", "5")
    assert again.returncode == 2 and "above --race-on-to 4" in again.stderr
