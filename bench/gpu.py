"""The paper preset on a GPU: wall, trials, per-trial set-up, GPU memory and utilisation, the
choice, at two GPU shares per trial; and whether an exact resume and a repeatable nll_iw hold on
CUDA as they do on the CPU.

Needs a CUDA GPU (exits with one line, code 2, where there is none) and the full MNIST: either
--data-dir DIR (holding MNIST/raw) or --mnist-gz DIR (the four .gz files of ../shared/mnist, or a
copy of them), unpacked into a temporary folder. Runs, for each --shares value:

    vae-search run --preset paper --data-dir DIR --gpus-per-trial SHARE --cpus-per-trial 1 RUN_ARGS

while `nvidia-smi` is sampled every 0.5 s (GPU utilisation, memory used, memory per process).
Then one trial's training on CUDA is checked: 2 epochs straight against 1 epoch, a checkpoint
written and read back, and 1 more epoch (the largest weight difference), and nll_iw twice; and
`--deterministic`: two trials of one seed with it and two without (`--checks-only`: no runs).
Prints and writes bench/results/<--name>.json, the README's estimate beside the figures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, median, write

README_ESTIMATE = ("README (an estimate, no GPU measured): on a quarter of an A10G a paper trial's epoch with its "
                   "validation takes about 2 s, a 20-epoch trial about 40 s")


def _smi(query: str, kind: str = "gpu") -> list[list[str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-{kind}={query}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    return [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]


def sample_gpu(samples: list[dict], per_process: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            util, used = _smi("utilization.gpu,memory.used")[0][:2]
            samples.append({"t": time.time(), "util": float(util), "used_mib": float(used)})
            for pid, mib in (row[:2] for row in _smi("pid,used_memory", "compute-apps") if len(row) >= 2):
                per_process[pid] = max(per_process.get(pid, 0.0), float(mib))
        except (subprocess.SubprocessError, ValueError, IndexError, OSError):
            pass
        stop.wait(0.5)


def one_run(data_dir: Path, share: float, run_args: list[str], storage: Path) -> dict:
    import pandas as pd

    name = f"gpu-{share:g}"
    command = [
        sys.executable,
        "-m",
        "search",
        "run",
        "--preset",
        "paper",
        "--data-dir",
        str(data_dir),
        "--gpus-per-trial",
        f"{share:g}",
        "--cpus-per-trial",
        "1",
        "--storage",
        str(storage),
        "--name",
        name,
        *run_args,
    ]
    samples: list[dict] = []
    per_process: dict[str, float] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_gpu, args=(samples, per_process, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if result.returncode != 0:
        return {"share": share, "error": result.stderr[-2000:], "wall_s": wall}
    chosen = re.search(r"chosen latent size: (\S+) \(confidence ([0-9.]+)\)", result.stdout)
    table = pd.read_csv(storage / name / "trials.csv")
    setup = table["time_s"] - table["train_time_s"]
    epochs = pd.read_csv(storage / name / "history.csv") if (storage / name / "history.csv").is_file() else None
    span = (table["started_at"].min(), table["finished_at"].max())
    busy = [s for s in samples if span[0] <= s["t"] <= span[1]]
    return {
        "share": share,
        "wall_s": wall,
        "trials": len(table),
        "devices": sorted(table["device"].astype(str).unique()),
        "trial_time_s_median": float(table["time_s"].median()),
        "train_time_s_median": float(table["train_time_s"].median()),
        "epoch_s_median": float(epochs["time_s"].median()) if epochs is not None and "time_s" in epochs else None,
        "setup_s_median": float(setup.median()),
        "setup_s_max": float(setup.max()),
        "trials_share_of_wall": float((span[1] - span[0]) / wall),
        "gpu_util_mean_while_trials_run": sum(s["util"] for s in busy) / len(busy) if busy else None,
        "gpu_memory_used_mib_max": max((s["used_mib"] for s in samples), default=None),
        "gpu_memory_per_process_mib_max": max(per_process.values(), default=None),
        "gpu_memory_per_process_mib": sorted(per_process.values()),
        "chosen": chosen.group(1) if chosen else None,
        "confidence": float(chosen.group(2)) if chosen else None,
        "last_lines": result.stdout.strip().splitlines()[-4:],
    }


def cuda_checks(data_dir: Path, device: str = "cuda", max_train: int = 12000) -> dict:
    """An exact resume and a repeatable nll_iw on CUDA, as on the CPU."""
    import torch

    from search.engine.trial import Likelihood, held_out_likelihood
    from vae import DataConfig, ModelConfig, TrainConfig, load_data
    from vae.checkpoint import load_state, load_weights, save_state
    from vae.training import TrainState, train

    splits = load_data(
        DataConfig(dataset="mnist", data_dir=str(data_dir), max_train=max_train), download=False
    ).for_training()
    config = TrainConfig(model=ModelConfig(latent_dim=15, channels=(32, 64), hidden_dim=256), batch_size=128, epochs=2,
                         lr=1e-3, seed=3, device=device)
    straight = train(config, splits)

    class Interrupted(Exception):
        pass

    def stop_after_first(result, current) -> None:  # as a trial does: a checkpoint per epoch, then a crash
        save_state(folder, current.model, config, current.to_dict())
        raise Interrupted

    with tempfile.TemporaryDirectory() as folder:
        try:
            train(config, splits, on_epoch=stop_after_first)
        except Interrupted:
            pass
        torch.manual_seed(999)  # what another trial in the same worker would leave behind
        torch.randn(1000, device=device)
        state = TrainState.from_dict(
            config, load_weights(folder, device), load_state(folder), n_train=len(splits.train)
        )
        resumed = train(config, splits, state=state)
    diff = max(float((a - b).abs().max()) for a, b in zip(straight.model.state_dict().values(),
                                                          resumed.model.state_dict().values(), strict=True))
    likelihood = Likelihood(samples=64, images=1000)
    on_gpu = device == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if on_gpu else 0
    once = held_out_likelihood(resumed.model, splits, likelihood)
    peak = torch.cuda.max_memory_allocated() - before if on_gpu else float("nan")
    twice = held_out_likelihood(resumed.model, splits, likelihood)
    return {
        "resume_max_weight_diff": diff,
        "resume_val_loss": [straight.history[-1].val_loss, resumed.history[-1].val_loss],
        "cudnn_deterministic": torch.backends.cudnn.deterministic, "tf32_conv": torch.backends.cudnn.allow_tf32,
        "nll_iw_twice": [once["nll_iw"], twice["nll_iw"]], "nll_iw_s": once["iw_time_s"],
        "nll_iw_peak_allocated_mib": peak / 2**20,
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if on_gpu else "cpu",
    }


def determinism(data_dir: Path, device: str = "cuda", max_train: int = 12000) -> dict:
    """`--deterministic` on the device: two paper trials of one seed (2 epochs) with it and two
    without; the largest weight difference and the validation losses of each pair."""
    import dataclasses

    import torch

    from vae import DataConfig, ModelConfig, TrainConfig, load_data
    from vae.training import train

    splits = load_data(
        DataConfig(dataset="mnist", data_dir=str(data_dir), max_train=max_train), download=False
    ).for_training()
    base = TrainConfig(model=ModelConfig(latent_dim=15, channels=(32, 64), hidden_dim=256), batch_size=128, epochs=2,
                       lr=1e-3, seed=3, device=device)
    out = {}
    for on in (True, False):
        config = dataclasses.replace(base, deterministic=on)
        first, second = train(config, splits), train(config, splits)
        out["with" if on else "without"] = {
            "max_weight_diff": max(
                float((a - b).abs().max())
                for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True)
            ),
            "val_loss": [first.history[-1].val_loss, second.history[-1].val_loss],
            "epoch_s": [r.time_s for r in first.history + second.history],
        }
    torch.use_deterministic_algorithms(False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="a folder holding MNIST/raw (the full MNIST)")
    parser.add_argument(
        "--mnist-gz", type=Path, default=ROOT.parent / "shared" / "mnist", help="the four MNIST .gz files"
    )
    parser.add_argument("--shares", default="0.25,0.125", help="GPU shares per trial to run, comma-separated")
    parser.add_argument(
        "--run-args", default="", help="more `run` flags, e.g. '--epochs 5 --trials 8' (default: the paper preset)"
    )
    parser.add_argument("--name", default="gpu")
    parser.add_argument("--checks-only", action="store_true", help="the CUDA checks and --deterministic's, no runs")
    parser.add_argument("--skip-checks", action="store_true", help="the runs alone, without the CUDA checks")
    args = parser.parse_args()
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu or shutil.which("nvidia-smi") is None:
        print(
            "bench/gpu.py: no CUDA GPU here (torch.cuda.is_available() is False or nvidia-smi is missing); nothing "
            "measured",
            file=sys.stderr,
        )
        sys.exit(2)
    figures: dict = {"run_args": args.run_args, "readme_estimate": README_ESTIMATE, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            raw = Path(tmp) / "data" / "MNIST" / "raw"
            raw.mkdir(parents=True)
            for gz in sorted(args.mnist_gz.glob("*-ubyte.gz")):
                (raw / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
            data_dir = Path(tmp) / "data"
        if not args.skip_checks:
            figures["cuda_checks"] = cuda_checks(data_dir)
            print(json.dumps(figures["cuda_checks"]), flush=True)
            figures["deterministic"] = determinism(data_dir)
            print(json.dumps(figures["deterministic"]), flush=True)
        for share in (() if args.checks_only else (float(s) for s in args.shares.split(","))):
            figures["runs"].append(one_run(data_dir, share, args.run_args.split(), Path(tmp) / "experiments"))
            print(json.dumps(figures["runs"][-1]), flush=True)
    done = [r for r in figures["runs"] if "error" not in r]
    if done:
        figures["epoch_s_median"] = median(
            [r["epoch_s_median"] for r in done if r.get("epoch_s_median")] or [float("nan")]
        )
    write(args.name, figures)
    print(README_ESTIMATE)


if __name__ == "__main__":
    main()
