"""`vae-search check` on a real two-node cluster started as cluster.yaml starts its nodes
(`ray start`, token authentication): a head and a worker started with `--num-gpus=1` on this CPU
machine (Ray counts a GPU; torch sees none). The storage probes go to a local folder and to S3
(moto's server on 127.0.0.1); the bad cases exit 2 with one line each and leave nothing behind."""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.search.helpers import FAKE_AWS, free_port, kill_session, main_cli, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("check")]

RAY = str(Path(sys.executable).parent / "ray")
BUCKET = "check-bucket"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """A `ray start --head` (no trial CPUs, as cluster.yaml's head) and a worker with 1 CPU and a
    logical GPU, each in a session of its own so that every process they start is killed at the end."""
    port = free_port()
    env = {**os.environ, **FAKE_AWS, "RAY_AUTH_MODE": "token",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path_factory.mktemp("nodes") / "ray-start.log"
    started = []
    try:
        with open(log, "w") as out:
            for args in (["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                          f"--dashboard-agent-listen-port={free_port()}"],
                         [f"--address=127.0.0.1:{port}", "--num-cpus=1", "--num-gpus=1",
                          f"--dashboard-agent-listen-port={free_port()}"]):
                process = subprocess.Popen([RAY, "start", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True)
                started.append(process)
                assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
        yield f"127.0.0.1:{port}", env
    finally:
        for process in started:
            kill_session(process.pid)
        address_file = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if address_file.read_text().strip().endswith(f":{port}"):
                address_file.unlink()


def _check(nodes, *args):
    address, env = nodes
    with _environ(env):
        return run_cli("check", "--address", address, *args)


@contextlib.contextmanager
def _environ(values):
    previous = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(previous)


def test_every_node_reports_and_a_cpu_run_with_local_storage_would_work(nodes, tmp_path):
    result = _check(nodes, "--storage", str(tmp_path / "runs"), "--format", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["ok"] and len(report["nodes"]) == 2 and len({n["node"] for n in report["nodes"]}) == 2
    worker = next(n for n in report["nodes"] if n["gpus"])
    assert (worker["cpus"], worker["gpus"], worker["storage"]) == (1, 1, None)
    assert worker["cuda_problem"] and worker["ray"] == report["nodes"][0]["ray"]
    assert not (tmp_path / "runs").exists()  # every probe removed, and the folder the check made for them
    table = _check(nodes)
    assert table.returncode == 0 and "ok: a run with --cpus-per-trial 1 --gpus-per-trial 0" in table.stdout
    assert len(table.stdout.strip().splitlines()) == 1 + 2 + 1  # header, one row per node, the verdict


def test_each_problem_is_one_line_under_the_table(nodes):
    # the worker's GPU is Ray's alone (torch sees none), and no node has 2 CPUs
    result = _check(nodes, "--gpus-per-trial", "0.5", "--cpus-per-trial", "2")
    assert result.returncode == 2
    cuda, fits = result.stderr.strip().splitlines()
    assert cuda.startswith("vae-search: error: node ") and "CUDA unusable: torch" in cuda
    assert fits.startswith("vae-search: error: no node fits: a trial asks for 2 CPU and 0.5 GPU")
    assert len(result.stdout.strip().splitlines()) == 1 + 2  # the table: a header and one row per node


def test_s3_storage_is_probed_from_every_node_and_left_as_it_was(nodes):
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        with _environ(FAKE_AWS):
            client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
        uri = f"s3://{BUCKET}/runs?endpoint_override=127.0.0.1:{port}&scheme=http"
        result = _check(nodes, "--storage", uri)
        assert result.returncode == 0, result.stderr[-3000:]
        assert client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # every probe removed
        missing = _check(nodes, "--storage", f"s3://no-such-bucket/runs?endpoint_override=127.0.0.1:{port}&scheme=http")
        assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
        assert "cannot be written from here" in missing.stderr
    finally:
        server.stop()


def test_bad_input_to_check_is_one_line_and_exit_2(nodes, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = _check(nodes, "--storage", str(blocker / "runs"))
    assert unwritable.returncode == 2 and len(unwritable.stderr.strip().splitlines()) == 1, unwritable.stderr
    assert blocker.read_text() == ""
    assert main_cli("check", "--address", f"127.0.0.1:{free_port()}").stderr.startswith(
        "vae-search: error: cannot reach"
    )
    assert main_cli("check", "--storage", "not a scheme://x").returncode == 2
    address, env = nodes
    with _environ({**env, "RAY_AUTH_TOKEN": "not-the-token", "RAY_gcs_server_port_wait_time_s": "1"}):
        refused = run_cli("check", "--address", address)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]


def test_the_verdict_on_an_autoscaling_cluster_waits_for_its_workers():
    from search.engine.preflight import NodeReport, problems

    head = NodeReport(
        node="h" * 16,
        host="head",
        cpus=0,
        gpus=0,
        memory_gb=16,
        python="3.11.7",
        ray="2.60.0",
        torch="2.14.1",
        torch_cuda="13.0",
        cuda_problem=None,
        device_name=None,
        storage=None,
    )
    client = {"python": "3.11.2", "ray": "2.60.0"}
    found, notes = problems([head], client=client, cpus_per_trial=1, gpus_per_trial=0.25, storage=None, autoscaled=True,
                            missing=[])
    assert found == [] and "is up yet: the cluster autoscales" in notes[0]
    found, _ = problems(
        [head], client=client, cpus_per_trial=1, gpus_per_trial=0.25, storage=None, autoscaled=False, missing=[]
    )
    assert found == [
        "no GPU node for --gpus-per-trial: a trial asks for 1 CPU and 0.25 GPU, the nodes have 0 CPU/0 GPU"
    ]
    older = NodeReport(**{**head.__dict__, "ray": "2.59.0"})
    found, _ = problems(
        [older], client=client, cpus_per_trial=0, gpus_per_trial=0, storage=None, autoscaled=False, missing=[]
    )
    assert len(found) == 1 and "Ray 2.59.0, but this client has" in found[0]


def test_a_node_that_sees_another_folder_than_the_driver_is_told_apart(tmp_path):
    from search.engine.preflight import _probe_storage

    assert _probe_storage(str(tmp_path), None) is None and list(tmp_path.iterdir()) == []
    assert "the driver's probe is not there" in _probe_storage(str(tmp_path), ".vae-search-check-elsewhere")
