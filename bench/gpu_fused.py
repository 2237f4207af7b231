"""Seed-epochs per device-second on one GPU: replicate seeds trained as separate processes (the
paper preset's packing today: one process per seed, --processes of them at once on the GPU)
against one process training them as one fused model (`vae.fused`, k = --ks members).

Each setting runs in fresh processes: paper widths (latent 15, channels 32/64, hidden 256),
batch 128, the full MNIST's training split (--mnist-gz, unpacked to a temporary folder) or the
sample digits (`--dataset sample`, for a dry run on a CPU with `--device cpu`). Per setting: the
wall, seed-epochs per second, the share of time a kernel ran (nvidia-smi's utilization.gpu every
0.5 s), achieved TFLOP/s (one training step's FLOPs from torch.utils.flop_counter, times the
steps, over the wall) and device memory per member (torch.cuda.max_memory_allocated over k).
Every setting runs eager, and on CUDA again with its step captured as CUDA graphs
(`TrainConfig.cuda_graphs`, `vae.graphs`) unless --graphs says otherwise. Writes
bench/results/<--name>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, median, write

CHILD = r"""
import json, math, sys, time, torch
from vae import DataConfig, ModelConfig, TrainConfig, load_data, train
from vae.fused import train_fused
from vae.metrics import vae_loss
from vae.model import ConvVAE
k, device, dataset, data_dir, epochs, max_train, graphs, first_seed = sys.argv[1:9]
k, epochs, first_seed, graphs = int(k), int(epochs), int(first_seed), graphs == "on"
max_train = int(max_train) or None
splits = load_data(DataConfig(dataset=dataset, data_dir=data_dir, max_train=max_train), download=False).for_training()
configs = [TrainConfig(model=ModelConfig(latent_dim=15), batch_size=128, epochs=epochs, lr=1e-3, seed=first_seed + i,
                       threads=1, device=device, cuda_graphs=graphs) for i in range(k)]
# the useful arithmetic: one solo step's FLOPs (forward and backward), whatever runs it
from torch.utils.flop_counter import FlopCounterMode
model = ConvVAE(configs[0].model).to(device)
x = torch.rand(128, 1, 28, 28, device=device)
with FlopCounterMode(display=False) as counter:
    logits, mu, logvar = model(x)
    vae_loss(logits, x, mu, logvar, 1.0).backward()
step_flops = counter.get_total_flops()
del model
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
started = time.perf_counter()
if k == 1:
    train(configs[0], splits)
else:
    train_fused(configs, splits)
if device == "cuda":
    torch.cuda.synchronize()
wall = time.perf_counter() - started
steps = epochs * math.ceil(len(splits.train) / 128)
memory = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
print(json.dumps({"k": k, "wall_s": wall, "seed_epochs": k * epochs, "flops": step_flops * steps * k,
                  "device_memory_mib": memory}))
"""


def _children(ks: list[int], args, data_dir: str, graphs: str) -> dict:
    """Run one child per entry of `ks` at once (distinct seeds); wall and figures of the group."""
    samples: list[float] = []
    stop = threading.Event()
    sampler = None
    if args.device == "cuda" and shutil.which("nvidia-smi"):
        from gpu import _smi

        def sample():
            while not stop.is_set():
                try:
                    samples.append(float(_smi("utilization.gpu")[0][0]))
                except (subprocess.SubprocessError, ValueError, IndexError, OSError):
                    pass
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    started = time.perf_counter()
    seeds = [1 + 100 * i for i in range(len(ks))]
    common = [args.device, args.dataset, data_dir, str(args.epochs), str(args.max_train), graphs]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(k), *common, str(seed)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, seed in zip(ks, seeds, strict=True)]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - started
    stop.set()
    if sampler:
        sampler.join()
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:  # recorded, and the other settings still run
            return {"error": err[-3000:], "wall_s": wall}
    rows = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    seed_epochs = sum(r["seed_epochs"] for r in rows)
    return {"wall_s": wall, "seed_epochs": seed_epochs, "seed_epochs_per_s": seed_epochs / wall,
            "tflops": sum(r["flops"] for r in rows) / wall / 1e12,
            "device_memory_mib_per_member": max((r["device_memory_mib"] / r["k"] for r in rows
                                                 if r["device_memory_mib"] is not None), default=None),
            "kernel_busy_pct": median(samples) if samples else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "sample"))
    parser.add_argument("--mnist-gz", type=Path, default=ROOT.parent / "shared" / "mnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=0, help="cap on training images (0: all)")
    parser.add_argument("--processes", type=int, default=4, help="solo processes at once (the unfused packing)")
    parser.add_argument("--ks", default="2,4,8")
    parser.add_argument("--graphs", default="both", choices=("both", "off", "on"),
                        help="CUDA graph capture: each setting both ways (default), or one way only")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--name", default="gpu_fused")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("bench/gpu_fused.py: no CUDA GPU here; --device cpu --dataset sample runs it dry", file=sys.stderr)
            sys.exit(2)
    figures: dict = {"device": args.device, "dataset": args.dataset, "epochs": args.epochs, "settings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = tmp
        if args.dataset == "mnist":
            raw = Path(tmp) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            for gz in sorted(args.mnist_gz.glob("*-ubyte.gz")):
                (raw / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
        fused = {f"fused k={k}": [k] for k in map(int, args.ks.split(","))}
        settings = {f"solo x{args.processes}": [1] * args.processes, **fused}
        ways = ["off"] if args.device != "cuda" else {"both": ["off", "on"]}.get(args.graphs, [args.graphs])
        settings = {name + (" graphs" if way == "on" else ""): (ks, way)
                    for way in ways for name, ks in settings.items()}
        for _ in range(args.repeats):
            for name, (ks, way) in settings.items():
                row = _children(ks, args, data_dir, way)
                figures["settings"].setdefault(name, []).append(row)
                print(name, json.dumps(row), flush=True)
    rates = {name: median([r["seed_epochs_per_s"] for r in rows if "error" not in r] or [float("nan")])
             for name, rows in figures["settings"].items()}
    figures["seed_epochs_per_s_over_solo"] = {name: rate / rates[next(iter(settings))] for name, rate in rates.items()}
    write(args.name, figures)


if __name__ == "__main__":
    main()
