"""A real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster): a head that runs
only the driver, two worker nodes with one CPU each and one with two CPUs and a GPU."""

import json
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.search.helpers import run_cli

# one cluster for the module, on one pytest worker (make test's --dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]


@pytest.fixture(scope="module")
def cluster():
    """The GPU is *logical*: Ray schedules it; no CUDA behind it."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.gpu_node = cluster.add_node(num_cpus=2, num_gpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def test_search_spreads_over_nodes_and_ships_data_through_the_object_store(cluster, tmp_path):
    result = run_cli("run", "--preset", "smoke", "--address", cluster.address, "--trials", "4", "--seeds", "2",
                     "--max-seeds", "2", "--scheduler", "fifo", "--storage", str(tmp_path), "--name", "multi")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "multi" / "trials.csv")
    worker_nodes = {n.node_id for n in cluster.list_all_nodes() if n is not cluster.head_node}
    assert set(table["node"]) <= worker_nodes  # the head has no CPUs: nothing ran there
    assert len(set(table["node"])) >= 2, table["node"].tolist()
    assert (table["status"] == "completed").all()
    # every trial on every node trained on the very tensors the driver loaded
    from vae import DataConfig, load_data

    driver_data = load_data(DataConfig(dataset="sample", max_train=600))
    assert (table["train_images"] == len(driver_data.train)).all()
    assert table["pixel_sum"].nunique() == 1
    assert table["pixel_sum"].iloc[0] == pytest.approx(float(driver_data.train.pixels.double().sum()) / 255)


def test_a_gpu_trial_on_a_node_whose_cuda_torch_cannot_use_stops_the_run_before_training(cluster, tmp_path):
    # Ray counts the node's GPU; torch sees none (no driver): never train on the CPU instead
    args = ("--address", cluster.address, "--gpus-per-trial", "0.5", "--max-failures", "0")
    result = run_cli("run", "--preset", "smoke", *args, "--storage", str(tmp_path), "--name", "gpu")
    experiment = tmp_path / "gpu"
    assert result.returncode == 2, result.stderr[-3000:]
    gpu_node = cluster.gpu_node
    errors = [line for line in result.stderr.splitlines() if line.startswith("vae-search: error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"cannot use CUDA on node {__import__('socket').gethostname()} ({gpu_node.node_id[:8]}): torch" in errors[0]
    # the cluster it joined: a plain `resume` would start a Ray of its own on this machine
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"resume with: vae-search resume {experiment} --address {cluster.address}"
    # nothing trained: no checkpoint, no result; the run is not done and its trials are not errored
    assert not list(experiment.glob("tune/trial_*/checkpoint_*"))
    assert json.loads((experiment / "run.json").read_text())["done"] is False
    # not counted: the trials wait for a fixed node, and `resume` runs them there
    assert _failures_counted(experiment) == {0}, "a trial was counted as failed (--max-failures 0 would lose it)"


def _failures_counted(experiment):
    """The failures Ray Tune counted against each trial, from its newest saved state."""
    state = json.loads(max(experiment.glob("tune/experiment_state-*.json")).read_text())
    return {json.loads(meta)["num_failures"] for _, meta in state["trial_data"]}


def test_a_trial_no_node_fits_gives_up_after_the_pending_timeout(cluster, tmp_path):
    # nodes of one and two CPUs: a 3-CPU trial never starts (an autoscaler could have added a node)
    result = run_cli("run", "--preset", "smoke", "--address", cluster.address, "--cpus-per-trial", "3",
                     "--pending-timeout", "3", "--storage", str(tmp_path), "--name", "stuck")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "--pending-timeout 3 s" in lines[0] and "3 CPU" in lines[0], result.stderr[-2000:]
    assert lines[1] == f"resume with: vae-search resume {tmp_path / 'stuck'} --address {cluster.address}"
    assert not (tmp_path / "stuck" / "trials.csv").exists()


def test_the_eta_counts_the_trial_slots_of_the_nodes_alive_now():
    """cluster.yaml's head holds no trials: the slots come from the workers as they join and leave."""
    import ray
    from ray.cluster_utils import Cluster

    from search.engine.progress import Progress

    def slots():
        running = [SimpleNamespace(status="RUNNING")]
        return progress._slots(running)

    grown = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        ray.init(address=grown.address, logging_level="ERROR", log_to_driver=False)
        progress = Progress("/nonexistent", None, storage_uri=None, minimum_trials=1, epochs=1,
                            per_trial={"cpus": 1, "gpus": 0, "max_concurrent": None})
        assert slots() == 1  # no worker yet: the one trial that must be running
        nodes = [grown.add_node(num_cpus=2), grown.add_node(num_cpus=2)]
        grown.wait_for_nodes()
        assert slots() == 4
        grown.remove_node(nodes[0])
        deadline = time.monotonic() + 30
        while slots() != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slots() == 2
    finally:
        ray.shutdown()
        grown.shutdown()
