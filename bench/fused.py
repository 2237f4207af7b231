"""Seeds trained together (vae.fused) against the same seeds trained one after another, on this
machine's CPU: time per seed-epoch and peak memory per member.

Each measurement runs in a fresh Python process (paper widths: latent 15, channels 32/64,
hidden 256; batch 128; the sample digits' 4,000 training images; 2 epochs; one torch thread):
`solo` trains one seed with `vae.train`, `fused-K` trains K seeds with `vae.fused.train_fused`.
The process reports its training wall and its peak RSS (the floor of Python + torch + the data is
in every process; memory per member is the peak over K). Sides alternate, --repeats times;
medians. Writes bench/results/fused.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import ROOT, median, write

CHILD = r"""
import json, resource, sys, time, torch
from vae import DataConfig, ModelConfig, TrainConfig, load_data, train
from vae.fused import train_fused
k, epochs = int(sys.argv[1]), int(sys.argv[2])
splits = load_data(DataConfig(dataset="sample")).for_training()
configs = [TrainConfig(model=ModelConfig(latent_dim=15), batch_size=128, epochs=epochs, lr=1e-3, seed=s, threads=1)
           for s in range(1, max(k, 1) + 1)]
started = time.perf_counter()
if k == 0:
    train(configs[0], splits)
else:
    train_fused(configs, splits)
wall = time.perf_counter() - started
print(json.dumps({"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def once(k: int, epochs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(k), str(epochs)], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ks", default="2,4")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    rows: dict[str, list[dict]] = {"solo": [], **{f"fused-{k}": [] for k in ks}}
    for i in range(args.repeats):
        rows["solo"].append(once(0, args.epochs))
        print(f"solo {i + 1}: {rows['solo'][-1]}", flush=True)
        for k in ks:
            rows[f"fused-{k}"].append(once(k, args.epochs))
            print(f"fused-{k} {i + 1}: {rows[f'fused-{k}'][-1]}", flush=True)
    solo_seed_epoch = median([r["wall_s"] for r in rows["solo"]]) / args.epochs
    solo_rss = median([r["peak_rss_mb"] for r in rows["solo"]])
    figures = {"setup": "paper widths, latent 15, batch 128, 4,000 sample digits, one thread, fresh process each",
               "epochs": args.epochs, "repeats": args.repeats, "runs": rows,
               "solo": {"seed_epoch_s": solo_seed_epoch, "peak_rss_mb": solo_rss}}
    for k in ks:
        seed_epoch = median([r["wall_s"] for r in rows[f"fused-{k}"]]) / (args.epochs * k)
        rss = median([r["peak_rss_mb"] for r in rows[f"fused-{k}"]])
        figures[f"fused-{k}"] = {"seed_epoch_s": seed_epoch, "seed_epoch_over_solo": seed_epoch / solo_seed_epoch,
                                 "peak_rss_mb": rss, "rss_per_member_over_solo": rss / k / solo_rss}
    write("fused", figures)


if __name__ == "__main__":
    main()
