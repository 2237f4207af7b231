"""A real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster): a head that runs
only the driver, two worker nodes with one CPU each and one with two CPUs and a GPU."""

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
        cluster.add_node(num_cpus=2, num_gpus=1)
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


def test_fractional_gpus_pack_trials_on_one_gpu(cluster, tmp_path):
    result = run_cli("run", "--preset", "smoke", "--address", cluster.address, "--gpus-per-trial", "0.5",
                     "--epochs", "4", "--trials", "2", "--seeds", "1", "--max-seeds", "1", "--scheduler", "fifo",
                     "--storage", str(tmp_path), "--name", "gpu")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "gpu" / "trials.csv")
    assert (table["status"] == "completed").all()
    # no CUDA here: trials that asked for a GPU fall back to the CPU device and say so
    assert (table["device"] == "cpu").all()
    # two trials at 0.5 GPU each run at the same time on the one GPU
    spans = table.sort_values("started_at")[["started_at", "finished_at"]].to_numpy()
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))


def test_local_ray_without_gpus_refuses_gpu_trials(tmp_path):
    result = run_cli("run", "--preset", "smoke", "--num-cpus", "2", "--gpus-per-trial", "0.5",
                     "--storage", str(tmp_path), "--name", "nogpu")
    assert result.returncode == 2 and "GPU" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nogpu").exists()


def test_a_trial_no_node_fits_gives_up_after_the_pending_timeout(cluster, tmp_path):
    # nodes of one and two CPUs: a 3-CPU trial never starts (an autoscaler could have added a node)
    result = run_cli("run", "--preset", "smoke", "--address", cluster.address, "--cpus-per-trial", "3",
                     "--pending-timeout", "3", "--storage", str(tmp_path), "--name", "stuck")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--pending-timeout 3 s" in lines[0] and "3 CPU" in lines[0], result.stderr[-2000:]
    assert not (tmp_path / "stuck" / "trials.csv").exists()
