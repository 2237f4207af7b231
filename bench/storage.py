"""Storage during a run against storage at its end, for a local folder and for S3 (moto's
server on 127.0.0.1, the same pyarrow S3 path a real bucket takes), side by side.

The run is overhead.py's storage part: paper widths on the sample digits, 6 epochs, 4 search
and 2 seeds trials (`STORAGE_RUN`). A thread samples the experiment's bytes every 0.25 s: the
folder's files, or every object under the run's prefix in the bucket (Ray Tune's experiment, the
driver's copies). Local and S3 runs alternate, --repeats each; medians of peak / final.

Writes bench/results/storage.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, median, write
from overhead import STORAGE_RUN, _du

BUCKET = "bench-bucket"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _bucket_bytes(client, prefix: str) -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sum(item["Size"] for page in pages for item in page.get("Contents", []))


def once(storage: str, measure, cwd: Path) -> dict:
    """One run with `--storage storage`; `measure()` the experiment's bytes now."""
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], measure())
            except Exception:  # noqa: BLE001 (a listing racing a delete: the next sample counts)
                pass
            stop.wait(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    thread.start()
    result = subprocess.run(
        [sys.executable, "-m", "search", "run", *STORAGE_RUN, "--storage", storage, "--name", "s"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **CREDENTIALS},
        start_new_session=True,
    )
    stop.set()
    thread.join()
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    final = measure()
    peak[0] = max(peak[0], final)
    return {"wall_s": time.perf_counter() - started, "peak_mb": peak[0] / 1e6, "final_mb": final / 1e6,
            "peak_over_final": peak[0] / final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--name", default="storage")
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    sys.path.insert(0, str(ROOT))
    from tests.search.helpers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(CREDENTIALS)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    rows: dict[str, list[dict]] = {"local": [], "s3": []}
    try:
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                experiment = folder / "runs" / "s"
                rows["local"].append(
                    once(str(folder / "runs"), lambda e=experiment: _du(e) if e.is_dir() else 0, folder)
                )
                print(f"local {i + 1}: {rows['local'][-1]}", flush=True)
                prefix = f"runs{i}/"
                uri = f"s3://{BUCKET}/runs{i}?endpoint_override=127.0.0.1:{port}&scheme=http"
                # the driver's own files stay in ./results/s (copied to the bucket): count the bucket only
                rows["s3"].append(once(uri, lambda prefix=prefix: _bucket_bytes(client, prefix), folder))
                print(f"s3 {i + 1}: {rows['s3'][-1]}", flush=True)
    finally:
        server.stop()
    write(
        args.name,
        {
            "run": "vae-search run " + " ".join(STORAGE_RUN),
            "repeats": args.repeats,
            **{
                side: {
                    "runs": r,
                    "median_peak_mb": median([x["peak_mb"] for x in r]),
                    "median_final_mb": median([x["final_mb"] for x in r]),
                    "median_peak_over_final": median([x["peak_over_final"] for x in r]),
                }
                for side, r in rows.items()
            },
        },
    )


if __name__ == "__main__":
    main()
