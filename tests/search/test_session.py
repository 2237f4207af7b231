"""One experiment stopped every way a run stops, and resumed each time (the suite's one
killed-and-resumed run): a second driver refused while it works, Ctrl-C (SIGINT) in the search,
preemption (a double SIGTERM) in the seeds stage, a SIGKILLed driver while racing with the
Optuna journal and Ray Tune's uploaded state torn, then a `resume` that finishes. A clean stop
exits 130 / 143 with no stack dump and nothing marked done; nothing finished before a stop is
lost or trained twice.

It runs with `--storage` on an S3-protocol server (moto's, started here on 127.0.0.1), the cloud
path end to end through pyarrow's S3 filesystem as a real bucket is used: Ray Tune keeps its
experiment in the bucket, the driver its own files in ./results/NAME, copied to the bucket.
Every driver joins the worker's running Ray (`ray_head`) as on a cloud cluster, whose nodes hold
the bucket's credentials: a signal or a SIGKILL reaches the driver alone, and the cluster outlives
it. (A local `--storage` is resumed end to end by the full-disk test, test_faults.py, and a
race-on killed with the Ray it started by test_race_on.py.)"""

import json
import os
import signal
import time

import optuna
import pandas as pd
import pytest

from tests.search.helpers import FAKE_AWS, JOINING, cli_process, free_port, main_cli, run_cli

# one run for the module, on one pytest worker (make test's --dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("resume-chain")]

BUCKET = "vae-bucket"
# Three close latent sizes, trained at one learning rate (a range too narrow to matter: which
# rates Optuna proposes depends on which trial finished first), and a confidence target two
# seeds cannot reach: racing follows, on the held-out likelihood (--metric nll). Six search
# trials leave the search stage running when the first one is printed.
ARGS = (
    "--preset",
    "smoke",
    "--num-cpus",
    "2",
    "--latent-dims",
    "6,7,8",
    "--lr-range",
    "3e-3,3.001e-3",
    "--trials",
    "6",
    "--seeds",
    "2",
    "--max-seeds",
    "3",
    "--confidence",
    "0.999",
    "--metric",
    "nll",
)
TORN = b'{"op_code": 6, "worker_id": "gone", "trial_id": 2, "step": 1, "inter'


def _live_status(experiment):
    """`vae-search status --format json` from another process while the run works."""
    result = main_cli("status", str(experiment), "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _finished(line, into):
    """Record `trial ID: … epochs E/N val PSNR P` lines of trials trained by this driver:
    {trial id: (epochs, PSNR)}."""
    if " trial " in line and "val PSNR" in line and "not trained again" not in line:
        into[line.split()[2].rstrip(":")] = (
            int(line.split("epochs ")[1].split("/")[0]),
            float(line.split("val PSNR")[1].split()[0]),
        )


def _interrupt(args, *, when, signals, experiment, cwd, live=False, busy=None):
    """Run the CLI (joining the running Ray: `args` name its --address); once a line starting with
    `when` is printed (and, with `live`, its status shows a finished trial), send `signals` to the
    driver. `busy(driver)` runs once the driver has printed its experiment line. Returns what a
    test reads."""
    step = {"finished": {}, "live": None, "busy": None, "lines": []}
    with cli_process(*args, cwd=cwd, env=JOINING) as driver:
        for line in driver.stdout:
            step["lines"].append(line)
            _finished(line, step["finished"])
            if busy is not None and step["busy"] is None and line.startswith("experiment:"):
                step["busy"] = busy(driver)
            if line.strip().startswith(when):
                if live:
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        step["live"] = _live_status(experiment)
                        if step["live"].get("trials", {}).get("done", 0) >= 1:
                            break
                        time.sleep(0.5)
                for sig in signals:
                    os.kill(driver.pid, sig)
                break
        stdout, stderr = driver.communicate(timeout=180)
    step.update(
        code=driver.returncode,
        pid=driver.pid,
        stderr=stderr,
        stdout="".join(step["lines"]) + stdout,
        race=json.loads((experiment / "race.json").read_text()) if (experiment / "race.json").exists() else None,
        run=json.loads((experiment / "run.json").read_text()),
        trials_csv=(experiment / "trials.csv").exists(),
    )
    return step


def _second_drivers(experiment, run_args, cwd):
    """While a driver works: `resume`, the same `run` and `analyze` from another process."""
    def attempt(driver):
        commands = (("resume", str(experiment)), run_args, ("analyze", str(experiment)))
        return driver.pid, [main_cli(*command, cwd=cwd) for command in commands]
    return attempt


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server with one bucket; its fake credentials in the environment (the drivers
    this module starts inherit them)."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_AWS.items():
            env.setenv(key, value)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            yield port, client
        finally:
            server.stop()


def _keys(client, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, s3, ray_head):
    port, client = s3
    root = tmp_path_factory.mktemp("chain")
    uri = f"s3://{BUCKET}/runs?endpoint_override=127.0.0.1:{port}&scheme=http"
    experiment = root / "results" / "x"  # the driver's own files; Ray Tune's are in the bucket
    join = ("--address", ray_head)
    run_args = ("run", *ARGS, "--storage", uri, "--name", "x", *join)
    steps = {
        "uri": uri,
        "address": ray_head,
        "sigint": _interrupt(
            run_args,
            when="search trial",
            signals=[signal.SIGINT],
            experiment=experiment,
            cwd=root,
            busy=_second_drivers(experiment, run_args, root),
        ),
    }
    steps["stopped_status"] = (_live_status(experiment), main_cli("status", str(experiment)).stdout)
    # preemption, and a second signal while the first stop is under way: it stops at once
    steps["sigterm"] = _interrupt(
        ("resume", str(experiment), *join),
        when="seeds trial",
        signals=[signal.SIGTERM, signal.SIGTERM],
        experiment=experiment,
        cwd=root,
        live=True,
    )
    # the driver only: the cluster ends the trials of a driver that died
    steps["sigkill"] = _interrupt(
        ("resume", str(experiment), *join), when="racing trial", signals=[signal.SIGKILL], experiment=experiment,
        cwd=root,
    )
    # a disk that filled (or a kill) mid-append leaves the journal's last line without its newline
    with open(experiment / "optuna.journal", "ab") as journal:
        journal.write(TORN)
    # and a kill may cut an upload short: make sure one is, the bucket's copy of Tune's state
    # (the newest copy, the one resume reads: each driver session writes its own, named by its start)
    state_key = max(k for k in _keys(client, "runs/x/tune/") if k.rsplit("/", 1)[-1].startswith("experiment_state-"))
    whole = client.get_object(Bucket=BUCKET, Key=state_key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=state_key, Body=whole[: len(whole) // 2])
    # the dead driver's lock does not block it
    steps["resumed"] = run_cli("resume", str(experiment), *join, cwd=root, env=JOINING)
    for name in ("sigint", "sigterm", "sigkill"):  # for a reader of a failure
        (root / f"{name}.log").write_text(steps[name]["stdout"] + steps[name]["stderr"])
    (root / "resumed.log").write_text(steps["resumed"].stdout + steps["resumed"].stderr)
    return experiment, steps


def test_a_second_driver_is_refused_while_the_first_works(chain):
    experiment, steps = chain
    pid, results = steps["sigint"]["busy"]
    for result in results:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
        assert f"{experiment} is running: driver pid {pid} on " in lines[0]
        assert f"watch it with `vae-search status {experiment}`" in lines[0] and "resume" not in lines[0]


def _assert_clean_stop(step, experiment, address, code, signal_name):
    assert step["code"] == code, step["stderr"][-3000:]
    assert "logging.cc" not in step["stderr"] and "Traceback" not in step["stderr"], step["stderr"][-3000:]
    assert signal_name in step["stderr"]
    assert step["stderr"].strip().splitlines()[-1] == f"resume with: vae-search resume {experiment} --address {address}"
    assert step["run"]["done"] is False and not step["trials_csv"]


def test_ctrl_c_in_the_search_stops_cleanly_and_says_how_to_resume(chain):
    experiment, steps = chain
    _assert_clean_stop(steps["sigint"], experiment, steps["address"], 130, "SIGINT")
    assert steps["sigint"]["race"]["stage"] == "search"  # stopped within the search stage
    status, text = steps["stopped_status"]
    assert status["state"] == "stopped" and "resume" in text


def test_a_double_sigterm_in_the_seeds_stops_at_once_and_status_showed_the_run_live(chain):
    experiment, steps = chain
    step = steps["sigterm"]
    _assert_clean_stop(step, experiment, steps["address"], 143, "SIGTERM")
    assert step["race"]["stage"] in ("seeds", "racing")
    # what `status` showed from another process while the resumed run worked
    live = step["live"]
    assert live["state"] == "running" and live["stage"] in ("seeds", "racing") and live["trials"]["done"] >= 1
    assert set(live["best_psnr"]) == {"6", "7", "8"} and live["elapsed_s"] > 0


def test_a_killed_driver_resumes_and_its_torn_journal_record_is_set_aside(chain):
    experiment, steps = chain
    assert steps["sigkill"]["code"] == -signal.SIGKILL, "the run ended before racing: nothing was killed"
    assert steps["sigkill"]["finished"], "no trial finished before the kill"
    resumed = steps["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines()[-1] == f"experiment: {experiment}"
    notices = [
        line
        for line in resumed.stdout.splitlines()
        if line.startswith("notice: optuna.journal: its last record was cut")
    ]
    (aside,) = experiment.glob("optuna.journal.torn-*")
    assert len(notices) == 1 and aside.name in notices[0] and aside.read_bytes() == TORN
    assert any(
        line.startswith("notice: Ray Tune's state (experiment_state-") and "restored its last complete copy" in line
        for line in resumed.stdout.splitlines()
    ), resumed.stdout[-2000:]
    from search.engine.study import STUDY_NAME, journal_storage

    study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(experiment / "optuna.journal"))
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)


def test_nothing_finished_before_a_stop_is_lost_or_trained_twice(chain):
    experiment, steps = chain
    table = pd.read_csv(experiment / "trials.csv")
    history = pd.read_csv(experiment / "history.csv")
    assert table["trial_id"].is_unique and (table["phase"] == "search").sum() == 6
    assert (table["epochs"] <= table["max_epochs"]).all()  # a finished trial reporting again trains nothing
    assert not history.duplicated(["trial_id", "epoch"]).any()
    # a clean stop (SIGINT, SIGTERM) saves Tune's state: every trial finished before it is kept
    for name in ("sigint", "sigterm"):
        for trial_id, (_, psnr) in steps[name]["finished"].items():
            row = table[table["trial_id"] == trial_id]
            assert len(row) == 1 and row["psnr_mean"].iloc[0] == pytest.approx(psnr, abs=0.006), (name, trial_id)
    # After a SIGKILL with the bucket's newest copy of Tune's state torn, resume starts from the
    # last complete copy, which lags the driver by up to the 2 s between the driver's backups:
    # a trial that finished after it is unknown to the resumed run, and its seed is trained again
    # under a new trial id (docs/design.md, what resume guarantees). The trials known to that copy
    # keep their id and values; one that finished after its last checkpoint was registered
    # reports again from that checkpoint, to the same value. A kill here comes within seconds of a
    # burst of finishing trials, so only some of them are known: at least one is
    killed = steps["sigkill"]["finished"]
    kept = {t: v for t, v in killed.items() if (table["trial_id"] == t).sum() == 1}
    assert kept, f"no trial the killed driver finished was kept: {sorted(killed)}"
    for trial_id, (epochs, psnr) in kept.items():
        row = history[(history["trial_id"] == trial_id) & (history["epoch"] == epochs)]
        assert len(row) == 1 and row["psnr_mean"].iloc[0] == pytest.approx(psnr, abs=0.006)
    # a trial trained again under a new id is a seeds trial of the same size and seed
    seeds = table[table["phase"] == "seeds"]
    assert not seeds.duplicated(["latent_dim", "seed"]).any()


def test_the_resumed_race_decides_on_every_seeds_trial_by_the_held_out_likelihood(chain):
    experiment, steps = chain
    table = pd.read_csv(experiment / "trials.csv")
    seeds = table[table["phase"] == "seeds"]
    assert seeds.groupby("latent_dim").size().between(2, 3).all() and (seeds["status"] == "completed").all()
    assert (seeds["stage"] == "racing").sum() >= 1
    race = json.loads((experiment / "race.json").read_text())
    assert race["stage"] == "done" and race["stop_reason"] in ("max-seeds", "confidence")
    assert race["n_trials"] == {str(d): int(n) for d, n in seeds.groupby("latent_dim").size().items()}
    # racing decided on nll_iw (lower is better), every seeds trial's, restored ones included
    assert race["metric"] == "nll" and seeds["nll_iw"].notna().all()
    means = seeds.groupby("latent_dim")["nll_iw"].mean()
    assert race["mean"] == pytest.approx({str(d): m for d, m in means.items()})
    assert race["best_latent_dim"] == int(means.idxmin())
    assert "answers by metric: nll_iw" in steps["resumed"].stdout and "mean PSNR" in steps["resumed"].stdout


def test_the_bucket_holds_the_experiment_and_analyze_and_status_work_from_it(chain, s3):
    experiment, steps = chain
    port, client = s3
    table = pd.read_csv(experiment / "trials.csv")
    # checkpoints are referenced as URIs that keep the endpoint
    assert table["checkpoint"].str.startswith(f"s3://{BUCKET}/runs/x/tune/").all()
    assert table["checkpoint"].str.endswith(f"?endpoint_override=127.0.0.1:{port}&scheme=http").all()
    analysis = main_cli("analyze", str(experiment))
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    keys = _keys(client, "runs/x/")
    for name in (
        "run.json",
        "trials.csv",
        "history.csv",
        "race.json",
        "selection.json",
        "report.html",
        "best_model/model.pt",
    ):
        assert f"runs/x/{name}" in keys, sorted(keys)[:20]
    assert not (
        experiment / "tune"
    ).exists()  # Ray Tune wrote to the bucket, not the driver's disk (a state backup aside)
    # one checkpoint per trial of the table is kept once the run ends (a trial the torn state
    # forgot, trained again under a new id, leaves its folder behind)
    per_trial = {}
    for key in keys:
        if "/checkpoint_" in key:
            trial, rest = key.split("/checkpoint_", 1)
            per_trial.setdefault(trial.rsplit("/trial_", 1)[1], set()).add(rest.split("/")[0])
    assert set(table["trial_id"]) <= set(per_trial)
    assert all(len(per_trial[t]) == 1 for t in table["trial_id"])
    # `status` reads the experiment straight from the bucket, as from another machine
    remote = main_cli(
        "status", f"s3://{BUCKET}/runs/x?endpoint_override=127.0.0.1:{port}&scheme=http", "--format", "json"
    )
    assert remote.returncode == 0, remote.stderr[-2000:]
    shown = json.loads(remote.stdout)
    assert shown["state"] == "done" and shown["trials"]["done"] == len(table)
    clash = main_cli("run", "--preset", "smoke", "--storage", steps["uri"], "--name", "x", cwd=experiment.parent.parent)
    assert clash.returncode == 2 and "already exists" in clash.stderr


def test_an_experiment_synced_down_from_the_bucket_races_on_where_it_is_and_leaves_the_bucket_alone(
    chain, s3, tmp_path, ray_head
):
    experiment, steps = chain
    port, client = s3
    assert steps["resumed"].returncode == 0, steps["resumed"].stderr[-3000:]
    # `aws s3 sync s3://bucket/runs/x ./copy/x`: every object of the experiment, Ray Tune's included
    before = {
        item["Key"]: item["ETag"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="runs/x/")
        for item in page.get("Contents", [])
    }
    synced = tmp_path / "copy" / "x"
    for key in (k for k in before if not k.endswith("/")):  # not the folder markers
        target = synced / key.removeprefix("runs/x/")
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(target))
    # one more trial is enough to show where it trains (--max-trials caps the race-on)
    more = str(len(pd.read_csv(synced / "trials.csv")) + 1)
    race_on = run_cli("resume", str(synced), "--max-seeds", "4", "--max-trials", more, "--address", ray_head,
                      cwd=tmp_path, env=JOINING)
    assert race_on.returncode == 0, race_on.stderr[-3000:]
    assert race_on.stdout.strip().splitlines()[-1] == f"experiment: {synced}"
    table = pd.read_csv(synced / "trials.csv")
    assert (table["stage"] == "racing").sum() > (pd.read_csv(experiment / "trials.csv")["stage"] == "racing").sum()
    assert all((synced / c).is_dir() for c in table["checkpoint"])  # checkpoints in the folder, not the bucket
    assert json.loads((synced / "run.json").read_text())["config"]["max_seeds"] == 4
    analysis = main_cli("analyze", str(synced))
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    after = {
        item["Key"]: item["ETag"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="runs/x/")
        for item in page.get("Contents", [])
    }
    assert after == before  # the bucket's experiment is untouched
