"""Target 1: the same short trials (one epoch on 500 digits, the smoke model) run by
`vae-search run` and by plain Optuna (`study.optimize(n_jobs=2)`, same training function, same
parallelism). Wall time of each whole command (imports, data, Ray start included), and the
scheduling cost per trial: wall time minus training time. Median of --repeats runs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import ROOT, cli, median, run_seconds, write

N_SEARCH, DIMS = 12, (2, 8)  # + one seeds trial per size (no racing: --max-seeds 1) = 14 trials
COMMON = ["--preset", "smoke", "--latent-dims", ",".join(map(str, DIMS)), "--epochs", "1", "--max-train", "500",
          "--trials", str(N_SEARCH), "--seeds", "1", "--max-seeds", "1", "--scheduler", "fifo", "--num-cpus", "2"]

OPTUNA = r'''
import sys, time, json
started = time.perf_counter()
import optuna, torch
from search.config import resolve
from vae import DataConfig, ModelConfig, TrainConfig, load_data, train
n_trials, dims = int(sys.argv[1]), [int(d) for d in sys.argv[2].split(",")]
preset = resolve("smoke", {"epochs": 1, "max_train": 500})
splits = load_data(DataConfig(dataset="sample", max_train=500))
train_times = []
def objective(trial):
    config = TrainConfig(model=ModelConfig(latent_dim=trial.suggest_categorical("latent_dim", dims),
                                           channels=preset.channels, hidden_dim=preset.hidden_dim),
                         lr=trial.suggest_float("lr", *preset.lr_range, log=True), epochs=1,
                         batch_size=preset.batch_size, threads=1)
    history = train(config, splits).history
    train_times.append(sum(r.time_s for r in history))
    return history[-1].psnr_mean
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
opt_started = time.perf_counter()
study.optimize(objective, n_trials=n_trials, n_jobs=2)
print(json.dumps({"wall": time.perf_counter() - started, "optimize": time.perf_counter() - opt_started,
                  "train_times": train_times}))
'''


def run_ours(storage: Path, name: str) -> dict:
    wall, stdout = cli("run", *COMMON, "--storage", str(storage), "--name", name)
    table = pd.read_csv(storage / name / "trials.csv")
    phases = run_seconds(stdout)  # the one Tune experiment (Tuner built, fit, tables written)
    train = table["train_time_s"].to_numpy()
    return {
        "wall": wall,
        "tune_experiment_s": phases,
        "outside_tune_s": wall - phases,  # imports, data, Ray start and shutdown
        "trials": len(table),
        "train_sum": float(train.sum()),
        # inside each trial: Tune's wall time of the trial minus its training epochs
        "in_trial_overhead_median": float((table["time_s"] - table["train_time_s"]).median()),
        # amortised: the experiment's core-seconds not spent training, per trial
        "overhead_per_trial": float((2 * phases - train.sum()) / len(table)),
    }


def run_optuna(n_trials: int) -> dict:
    out = subprocess.run([sys.executable, "-c", OPTUNA, str(n_trials), ",".join(map(str, DIMS))], capture_output=True,
                         text=True, cwd=ROOT, check=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    train = sum(data["train_times"])
    return {"wall": data["wall"], "optimize": data["optimize"], "trials": n_trials, "train_sum": train,
            "overhead_per_trial": (2 * data["optimize"] - train) / n_trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as storage:
        for i in range(args.repeats):
            ours.append(run_ours(Path(storage), f"sched-{i}-{int(time.time())}"))
            theirs.append(run_optuna(ours[-1]["trials"]))
            print(f"repeat {i + 1}: ours {ours[-1]['wall']:.1f} s, optuna {theirs[-1]['wall']:.1f} s", flush=True)
    ratio = median([o["wall"] for o in ours]) / median([t["wall"] for t in theirs])
    cost = median([o["overhead_per_trial"] for o in ours])
    write("scheduling", {
        "targets": {"wall_ratio": "<= 1.5 (moonshot 1.25)", "scheduling_cost_per_trial_s": "<= 0.3"},
        "trials": ours[0]["trials"], "repeats": args.repeats, "ours": ours, "optuna": theirs,
        "ours_wall_median": median([o["wall"] for o in ours]),
        "optuna_wall_median": median([t["wall"] for t in theirs]),
        "wall_ratio": ratio,
        "ours_overhead_per_trial_median": cost,
        "ours_in_trial_overhead_median": median([o["in_trial_overhead_median"] for o in ours]),
        "optuna_overhead_per_trial_median": median([t["overhead_per_trial"] for t in theirs]),
        "ours_outside_tune_median": median([o["outside_tune_s"] for o in ours]),
        "ours_tune_experiment_median": median([o["tune_experiment_s"] for o in ours]),
        "met": {"wall_ratio": ratio <= 1.5, "moonshot": ratio <= 1.25, "scheduling_cost": cost <= 0.3},
    })


if __name__ == "__main__":
    main()
