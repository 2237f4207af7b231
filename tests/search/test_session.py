"""Ctrl-C (SIGINT) and preemption (SIGTERM) on a real run: a clean stop with exit 130 / 143,
no stack dump, nothing marked done, and `resume` finishing with nothing lost or re-run."""

import json
import os
import signal
import time

import pandas as pd
import pytest

from tests.search.helpers import cli_process, main_cli, run_cli

pytestmark = pytest.mark.slow  # real Ray or the command line end to end

ARGS = ("--preset", "smoke", "--num-cpus", "2", "--epochs", "3", "--max-train", "800", "--trials", "6", "--seeds", "2",
        "--max-seeds", "2")


def _live_status(experiment):
    """`vae-search status --format json` from another process while the run works."""
    result = main_cli("status", str(experiment), "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _interrupt(args, *, when, signals, experiment=None):
    """Run the CLI; once a line starting with `when` is printed (and, given `experiment`, its
    live status shows a finished trial), send `signals` to the driver. Returns (exit code,
    stdout lines, stderr, {trial id: val PSNR} printed before the signal, live status)."""
    finished, lines, live = {}, [], None
    with cli_process(*args) as driver:
        for line in driver.stdout:
            lines.append(line)
            if " trial " in line and "val PSNR" in line:
                finished[line.split()[2].rstrip(":")] = float(line.split("val PSNR")[1].split()[0])
            if line.strip().startswith(when):
                if experiment is not None:
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        live = _live_status(experiment)
                        if live.get("trials", {}).get("done", 0) >= 1:
                            break
                        time.sleep(0.5)
                for sig in signals:
                    os.kill(driver.pid, sig)
                break
        stdout, stderr = driver.communicate(timeout=180)
    return driver.returncode, lines + stdout.splitlines(keepends=True), stderr, finished, live


def _assert_clean_stop(code, stderr, experiment, expected):
    assert code == expected, stderr[-3000:]
    assert "logging.cc" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f"resume with: vae-search resume {experiment}"
    assert json.loads((experiment / "run.json").read_text())["done"] is False
    assert not (experiment / "trials.csv").exists()


def _assert_complete(experiment, kept):
    table = pd.read_csv(experiment / "trials.csv")
    assert table["trial_id"].is_unique
    assert (table["phase"] == "search").sum() == 6
    seeds = table[table["phase"] == "seeds"]
    assert seeds.groupby("latent_dim").size().between(2, 3).all() and (seeds["status"] == "completed").all()
    history = pd.read_csv(experiment / "history.csv")
    assert not history.duplicated(["trial_id", "epoch"]).any()
    for trial_id, psnr in kept.items():  # finished before a signal: kept, not trained again
        row = table[table["trial_id"] == trial_id]
        assert len(row) == 1 and abs(row["psnr_mean"].iloc[0] - psnr) < 0.006
        assert history[history["trial_id"] == trial_id]["epoch"].is_unique
    assert json.loads((experiment / "race.json").read_text())["stage"] == "done"


def test_sigint_in_the_search_then_a_double_sigterm_in_the_seeds_then_resume_completes(tmp_path):
    experiment = tmp_path / "x"
    code, _, stderr, before_int, _ = _interrupt(("run", *ARGS, "--storage", str(tmp_path), "--name", "x"),
                                                when="search trial", signals=[signal.SIGINT])
    _assert_clean_stop(code, stderr, experiment, 130)
    assert "SIGINT" in stderr
    assert json.loads((experiment / "race.json").read_text())["stage"] == "search"  # stopped within the search stage
    stopped = _live_status(experiment)
    assert stopped["state"] == "stopped" and "resume" in main_cli("status", str(experiment)).stdout

    # preemption, and a second signal while the first stop is under way: it stops at once
    code, _, stderr, before_term, live = _interrupt(("resume", str(experiment)), when="seeds trial",
                                                    signals=[signal.SIGTERM, signal.SIGTERM], experiment=experiment)
    assert code == 143, stderr[-3000:]
    assert "logging.cc" not in stderr and "SIGTERM" in stderr
    assert stderr.strip().splitlines()[-1] == f"resume with: vae-search resume {experiment}"
    assert json.loads((experiment / "run.json").read_text())["done"] is False
    assert json.loads((experiment / "race.json").read_text())["stage"] in ("seeds", "racing")
    # what `status` showed from another process while the resumed run worked
    assert live["state"] == "running" and live["stage"] in ("seeds", "racing") and live["trials"]["done"] >= 1
    assert set(live["best_psnr"]) == {"2", "8"} and live["elapsed_s"] > 0

    resumed = run_cli("resume", str(experiment))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines()[-1] == f"experiment: {experiment}"
    _assert_complete(experiment, {**before_int, **before_term})
