"""A node lost mid-run, as a reclaimed spot instance goes, on a real cluster on this machine
(ray.cluster_utils.Cluster): a head that runs only the driver, a steady worker node and a spot
worker node with one CPU each."""

import contextlib
import json
import os
import re
import threading
import time

import pandas as pd
import pytest

from tests.search.helpers import cli_process, training_on

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lost-node")]


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    # The head declares a silent node dead after 3 missed health checks 0.5 s apart (Ray's defaults:
    # 5 of 3 s, after a 5 s grace): what is under test is what the run does once Ray knows.
    health = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 500, "health_check_timeout_ms": 500,
              "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": health})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _when(find, deadline_s=120):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.02)
    return None


def _requested(address: str) -> list[dict]:
    """The bundles the cluster's autoscaler is asked to fit (`ray.autoscaler.sdk.request_resources`,
    as Ray's autoscaler reads them back)."""
    from ray._raylet import GcsClient
    from ray.autoscaler._private.constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL

    value = GcsClient(address=address).internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL, None)
    return json.loads(value) if value else []


def _logged(trial_dir) -> int:
    """Results of a trial the driver has logged (its result.json's lines). Ray Tune logs a result
    before it registers the result's checkpoint (a save call to the trial's actor), and takes in
    the next result only after that: a second line means the first checkpoint is the driver's."""
    try:
        return len((trial_dir / "result.json").read_text().splitlines())
    except OSError:
        return 0


def test_a_lost_node_costs_no_retry_and_a_killed_trial_still_does(cluster, tmp_path):
    """--max-failures 0: a node SIGKILLed with its trial's worker mid-trial (a reclaimed spot
    instance) must not count as the trial's failure; a trial process killed on a live node must.
    Meanwhile the autoscaler is asked for the run's whole first wave, and nothing once it ends."""
    steady = cluster.add_node(num_cpus=1)
    spot = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    experiment = tmp_path / "spot"
    args = ("run", "--preset", "smoke", "--address", cluster.address, "--epochs", "8", "--max-train", "1000",
            "--max-failures", "0", "--scheduler", "fifo", "--storage", str(tmp_path), "--name", "spot")
    asked = []

    def watch_requests():
        while driver.poll() is None:
            try:
                asked.append(len(_requested(cluster.address)))
            except Exception as exc:  # noqa: BLE001 (kept for the assertion's message)
                asked.append(exc)
            time.sleep(0.1)

    with cli_process(*args) as driver:
        watch = threading.Thread(target=watch_requests, daemon=True)
        watch.start()
        # a checkpoint the driver has taken in (a later result logged), so the restart has one to start from
        lost = _when(lambda: (found := training_on(experiment / "tune", [spot]))
                     and _logged(experiment / "tune" / f"trial_{found[0]}") >= 2 and found)
        if lost:
            cluster.remove_node(spot, allow_graceful=False)  # its raylet and store, SIGKILL
            with contextlib.suppress(ProcessLookupError):  # and the trial's worker with them, as the instance goes
                os.kill(lost[1], 9)
            lost = lost[0]
        killed = _when(lambda: (found := training_on(experiment / "tune", [steady])) and found[0] != lost and found)
        if killed:
            os.kill(killed[1], 9)
        stdout, stderr = driver.communicate(timeout=300)
        watch.join()
    assert lost and killed, "the trials finished before the node or the worker could be killed"
    assert driver.returncode == 0, stderr[-3000:]
    table = pd.read_csv(experiment / "trials.csv").set_index("trial_id")
    killed = killed[0]
    # the lost node's trial restarted from its checkpoint elsewhere and trained each epoch once
    assert table.loc[lost, "status"] == "completed" and table.loc[lost, "epochs"] == 8
    history = pd.read_csv(experiment / "history.csv")
    assert sorted(history.loc[history["trial_id"] == lost, "epoch"]) == list(range(1, 9))
    console = stdout + stderr
    errors = experiment / "tune" / f"trial_{lost}" / "error.txt"
    assert errors.is_file() and "Failure # 0" in errors.read_text(), console  # not counted
    # the process killed on a live node is the trial's own failure: with --max-failures 0, final
    assert table.loc[killed, "status"] == "errored"
    assert (table.drop(index=killed)["status"] == "completed").all(), table["status"].to_dict()
    # one line for the lost node, one for the failure; Ray's own paragraphs go to driver.log
    assert (
        len(
            re.findall(
                rf"node [0-9a-f]{{8}} lost \(.*\): trial {lost} \(from epoch [2-7]\) restarts on a live node", console
            )
        )
        == 1
    ), console
    assert f"trial {killed}: failed (" in console
    assert "Traceback" not in console and "(raylet)" not in console and "Raylet is terminated" not in console, console
    log = (experiment / "driver.log").read_text()
    assert f"lost node of trial {lost}" in log and f"failure of trial {killed}" in log
    # smoke: 3 search trials and 2 seeds trials for each of 2 sizes, 1 CPU each (the cluster has room for 2)
    assert max(n for n in asked if isinstance(n, int)) >= 7, asked
    assert _requested(cluster.address) == []  # withdrawn: the autoscaler may scale down again


def test_a_fused_trial_on_a_lost_node_restarts_every_member_from_its_checkpoint(cluster, tmp_path):
    """--fuse-seeds 2: one size's two seeds train as one Tune trial on the only worker node, which
    is lost mid-trial; a new node joins (as an autoscaler replaces it) and both members go on from
    the trial's checkpoint there, each training each epoch once. The line names the members a user
    sees everywhere else."""
    spot = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    experiment = tmp_path / "fused"
    args = ("run", "--preset", "smoke", "--address", cluster.address, "--latent-dims", "4", "--trials", "1",
            "--seeds", "2", "--fuse-seeds", "2", "--epochs", "8", "--max-train", "1000", "--max-failures", "0",
            "--scheduler", "fifo", "--storage", str(tmp_path), "--name", "fused")
    with cli_process(*args) as driver:
        # a checkpoint the driver has taken in (a later result logged), so the restart has one to start from
        lost = _when(lambda: (found := training_on(experiment / "tune", [spot], fused=True))
                     and _logged(experiment / "tune" / f"trial_{found[0]}") >= 2 and found)
        if lost:
            cluster.remove_node(spot, allow_graceful=False)
            with contextlib.suppress(ProcessLookupError):
                os.kill(lost[1], 9)
            lost = lost[0]
            cluster.add_node(num_cpus=1)
        stdout, stderr = driver.communicate(timeout=300)
    assert lost, "the fused trial finished before its node could be lost"
    assert driver.returncode == 0, stderr[-3000:]
    table = pd.read_csv(experiment / "trials.csv").set_index("trial_id")
    members = [f"{lost}-0", f"{lost}-1"]
    assert sorted(table.index[table["phase"] == "seeds"]) == members
    assert (table["status"] == "completed").all() and (table.loc[members, "epochs"] == 8).all(), table
    assert table.loc[members, "seed"].nunique() == 2 and table.loc[members, "psnr_mean"].nunique() == 2
    history = pd.read_csv(experiment / "history.csv")
    for member in members:
        assert sorted(history.loc[history["trial_id"] == member, "epoch"]) == list(range(1, 9)), member
    errors = experiment / "tune" / f"trial_{lost}" / "error.txt"
    assert errors.is_file() and "Failure # 0" in errors.read_text()  # lost, not counted against --max-failures 0
    console = stdout + stderr
    assert re.search(rf"node [0-9a-f]{{8}} lost \(.*\): trials {lost}-0, {lost}-1 \(from epoch [2-7]\) restart on a "
                     "live node", console), console
