"""The cluster path exactly as the README tells it, on this machine: a real Ray head started as
cluster.yaml starts it (token authentication, the dashboard and job server on loopback, here
on random ports), the README's `ray job submit --working-dir .` job that runs the search and the
analysis, its logs, and a client without the token refused."""

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.search.helpers import free_port, kill_session

# one head for the module, on one pytest worker (make test's --dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("job")]

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """`RAY_AUTH_MODE=token ray start --head --dashboard-host=127.0.0.1` (cluster.yaml's head
    command), in a session of its own so that every process it starts is killed at the end."""
    # the agent's port too: every Ray with the dashboard package (ray[default]) starts an agent on
    # 52365 by default, and a test's local Ray on the other pytest worker may hold it; the head's
    # agent then cannot bind, and job submission answers "No available agent to submit job"
    port, dashboard, agent = free_port(), free_port(), free_port()
    # the project's environment, as on a node where cluster.yaml installed it
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    log = tmp_path_factory.mktemp("head") / "ray-start.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                RAY,
                "start",
                "--head",
                f"--port={port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--dashboard-agent-listen-port={agent}",
                "--num-cpus=2",
                "--block",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", dashboard)) == 0:
                    break
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail(f"the head's dashboard never listened:\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{dashboard}", env, port
    finally:
        kill_session(process.pid)
        process.wait()
        # a killed `ray start` leaves its address in the file every Ray on the machine reads: a plain
        # ray.init(num_cpus=...) afterwards would try to join the dead head. Leave the machine as found
        address_file = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if address_file.read_text().strip().endswith(f":{port}"):
                address_file.unlink()


def _job(address: str, env: dict, command: str, *extra: str) -> subprocess.CompletedProcess:
    """The README's submission, word for word but for the address and the command. A head whose
    dashboard listens may not have its job agent up yet: Ray answers "No available agent to
    submit job, please try again later", and so the submission is tried again, for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            [RAY, "job", "submit", "--address", address, *extra, "--working-dir", ".", "--", "bash", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if "No available agent to submit job" not in result.stdout + result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(2)


def test_the_readme_job_runs_the_search_and_the_analysis(head, tmp_path):
    address, env, _ = head
    experiment = tmp_path / "jobs" / "job-1"
    command = (f"vae-search run --preset smoke --address auto --storage {experiment.parent} --name job-1 "
               f"&& vae-search analyze {experiment}")
    result = _job(address, env, command)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^  search trial \w+: latent \d+ lr", result.stdout, re.M)  # the per-trial lines reach the client
    assert f"experiment: {experiment}" in result.stdout and f"report: {experiment / 'report.html'}" in result.stdout
    assert (experiment / "selection.json").is_file() and (experiment / "best_model" / "model.pt").is_file()

    job_id = re.search(r"Job '(\w+)' submitted successfully", result.stdout + result.stderr).group(1)
    logs = subprocess.run([RAY, "job", "logs", "--address", address, "--follow", job_id], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert logs.returncode == 0 and re.search(r"^  seeds trial \w+: latent \d+ lr", logs.stdout, re.M), logs.stderr[
        -2000:
    ]


def test_a_job_without_the_token_is_refused(head, tmp_path):
    address, env, _ = head
    marker = tmp_path / "ran"
    result = _job(address, {**env, "RAY_AUTH_TOKEN": "not-the-token"}, f"touch {marker}", "--no-wait")
    assert result.returncode != 0 and re.search(
        r"401|[Uu]nauthori[sz]ed|[Aa]uthentication", result.stdout + result.stderr
    )
    time.sleep(2)
    assert not marker.exists()


def test_a_local_run_starts_its_own_ray_even_beside_a_running_head(head):
    # `ray start` left a cluster on this machine (and its address in /tmp/ray/ray_current_cluster):
    # a run without --address must not join it (and must not fail trying). The head is known by
    # its GCS port: /tmp/ray/ray_current_cluster is shared by every Ray on the machine, and a Ray
    # of a test on the other pytest worker can rewrite or remove it meanwhile
    _, env, head_port = head
    code = ("import ray\nfrom search.config import SearchConfig\nfrom search.engine.session import driver_session\n"
            "with driver_session(SearchConfig(num_cpus=1), None):\n    print(ray.get_runtime_context().gcs_address)")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    gcs = result.stdout.strip()
    assert gcs and gcs.rsplit(":", 1)[1] != str(head_port)
