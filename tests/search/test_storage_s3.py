"""--storage on an S3-protocol server (moto's, started here on 127.0.0.1): the cloud path end to
end, through pyarrow's S3 filesystem as a real bucket would be used. The endpoint is given in
the URI's query string, pyarrow's documented way for S3-compatible stores."""

import json
import os
import signal
import socket

import pandas as pd
import pytest

from tests.search.helpers import cli_process, main_cli, run_cli

pytestmark = pytest.mark.slow  # real Ray or the command line end to end

BUCKET = "vae-bucket"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    port = _free_port()
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


def test_run_killed_resume_and_analyze_on_an_s3_bucket(s3, tmp_path):
    port, client = s3
    uri = f"s3://{BUCKET}/runs?endpoint_override=127.0.0.1:{port}&scheme=http"
    args = ("run", "--preset", "smoke", "--num-cpus", "2", "--trials", "2", "--seeds", "1", "--max-seeds", "2", "--storage", uri,
            "--name", "cloud")
    with cli_process(*args, cwd=tmp_path) as driver:
        for line in driver.stdout:
            if line.strip().startswith("search trial"):
                os.kill(driver.pid, signal.SIGKILL)
                break
        driver.wait()
    local = tmp_path / "results" / "cloud"
    assert any(key.startswith("runs/cloud/tune/") for key in _keys(client, "runs/cloud/"))  # the name joined the path

    # the kill may cut an upload short; make sure one is: the bucket's experiment state torn
    (state_key,) = [k for k in _keys(client, "runs/cloud/tune/") if k.rsplit("/", 1)[-1].startswith("experiment_state-")]
    whole = client.get_object(Bucket=BUCKET, Key=state_key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=state_key, Body=whole[: len(whole) // 2])

    resumed = run_cli("resume", str(local), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert any(line.startswith("notice: Ray Tune's state (experiment_state-") and "restored its last complete copy" in line
               for line in resumed.stdout.splitlines()), resumed.stdout[-2000:]
    table = pd.read_csv(local / "trials.csv")
    assert (table["phase"] == "search").sum() == 2 and (table.loc[table["phase"] == "seeds", "status"] == "completed").all()
    # checkpoints are referenced as URIs that keep the endpoint
    assert table["checkpoint"].str.startswith(f"s3://{BUCKET}/runs/cloud/tune/").all()
    assert table["checkpoint"].str.endswith(f"?endpoint_override=127.0.0.1:{port}&scheme=http").all()

    analysis = main_cli("analyze", str(local), cwd=tmp_path)
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    keys = _keys(client, "runs/cloud/")
    for name in ("run.json", "trials.csv", "history.csv", "race.json", "selection.json", "report.html", "best_model/model.pt"):
        assert f"runs/cloud/{name}" in keys, sorted(keys)[:20]
    assert not (local / "tune").exists()  # Ray Tune wrote to the bucket, not the driver's disk (a state backup aside)
    # one checkpoint per trial is kept once the run ends
    per_trial = {}
    for key in keys:
        if "/checkpoint_" in key:
            trial, rest = key.split("/checkpoint_", 1)
            per_trial.setdefault(trial, set()).add(rest.split("/")[0])
    assert len(per_trial) == len(table) and all(len(kept) == 1 for kept in per_trial.values())
    # `status` reads the experiment straight from the bucket, as from another machine
    remote = main_cli("status", f"s3://{BUCKET}/runs/cloud?endpoint_override=127.0.0.1:{port}&scheme=http", "--format", "json",
                     cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr[-2000:]
    shown = json.loads(remote.stdout)
    assert shown["state"] == "done" and shown["trials"]["done"] == len(table)
    clash = main_cli("run", "--preset", "smoke", "--storage", uri, "--name", "cloud", cwd=tmp_path / "results")
    assert clash.returncode == 2 and "already exists" in clash.stderr


def test_an_unreachable_bucket_fails_fast_with_one_line(tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    port = _free_port()  # nothing listens there
    uri = f"s3://{BUCKET}/runs?endpoint_override=127.0.0.1:{port}&scheme=http&connect_timeout=1&request_timeout=2"
    result = main_cli("run", "--preset", "smoke", "--storage", uri, "--name", "nowhere", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vae-search: error: --storage"), result.stderr[-2000:]
    assert not (tmp_path / "results" / "nowhere").exists()
