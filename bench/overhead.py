"""The cost around each trial, side by side with plain Optuna and with bare processes.

Parts (all by default; pick with --parts), each for this checkout and, with --baseline DIR,
for another checkout of the project (`git worktree add /tmp/before REV`), alternating, so
both see the same machine:

- short: 18 one-epoch trials on 500 digits (`--preset smoke --latent-dims 2,8 --epochs 1
  --max-train 500 --trials 12 --seeds 1 --scheduler fifo`) by `vae-search run`, and the same
  number of trials through plain Optuna (`study.optimize(n_jobs=2)`, the project's own
  `vae.train`). Wall of each whole command, the driver's own CPU seconds, and where the run's
  wall went: imports, Ray's start, Tune's set-up to the first trial, the trials' span, the first
  trial's set-up (actor start, imports, data), the rest of Tune after the last trial, the tables,
  the report, Ray's shutdown.
  Also the same trials through a plain Ray Tune `Tuner` (FIFO, one report per epoch, no
  checkpoint, no searcher): what Ray itself costs, so the ratio to it is the tool's own share.
- bare: 12 equal 2-epoch trials (quick widths, 2,000 digits, FIFO, one CPU each) at
  concurrency 1 and 2, and the same 12 `vae.train` calls in 1 or 2 bare Python processes, each
  loading the data once and training its share one after another.
- memory: the paper preset's reduced run on the full MNIST (../shared/mnist; 1 epoch, latent
  20, 12,000 training images, 2 search + 1 seeds trial): every trial worker's peak PSS, sampled
  every 0.1 s, against the floor measured in the same script (a process that imports torch and
  ray.tune and builds the paper model and its Adam).
- storage: a paper-width run on the sample digits (6 epochs, 4 + 2 trials): the experiment
  folder's peak size while it runs against its size at the end.
- checkpoint: one per-epoch checkpoint at the paper widths: its size, the trial's write
  (`save_state`) and a copy of the folder (what Ray Tune's persist to a local path does).
- quick (not in the default parts: minutes a run): the default quick preset at `--seed 0`, the
  share of the two cores' time its trials hold (Tune's time of each trial, summed) over the Tune
  experiment and over the whole command, and the driver's own CPU.

With --warm the bare and quick parts' runs join a running Ray (`ray start --head`, 2 CPUs,
started by the script, one smoke run on it first) instead of each starting its own.

Medians over --repeats. Writes bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import MNIST_FULL, ROOT, median, write
from _footprint import checkpoint_once, memory_once, storage_once
from _overhead_run import PYTHON, _env, _python, run_driver, trials
from scheduling import OPTUNA  # the same trials through plain Optuna, as scheduling.py runs them
from warm import ray_head

SHORT = ["--preset", "smoke", "--latent-dims", "2,8", "--epochs", "1", "--max-train", "500", "--trials", "12",
         "--seeds", "1", "--scheduler", "fifo", "--num-cpus", "2"]
BARE = ["--preset", "quick", "--latent-dims", "8", "--epochs", "2", "--max-train", "2000", "--trials", "11",
        "--seeds", "1", "--max-seeds", "1", "--scheduler", "fifo", "--num-cpus", "2", "--cpus-per-trial", "1",
        "--dataset", "sample"]

# bare processes: `concurrency` plain Python processes, each loading the data once and training
# its share of the trials one after another (what a hand-written pool would do)
BARE_WORKER = r'''
import sys, torch
from search.config import resolve
from vae import DataConfig, ModelConfig, TrainConfig, load_data, train
preset = resolve("quick", {"max_train": 2000, "dataset": "sample", "epochs": 2})
splits = load_data(DataConfig(dataset="sample", max_train=2000))
for lr in (float(x) for x in sys.argv[1:]):
    train(TrainConfig(model=ModelConfig(latent_dim=8, channels=preset.channels, hidden_dim=preset.hidden_dim),
                      lr=lr, epochs=2, batch_size=preset.batch_size, threads=1), splits)
'''

# plain Ray Tune: the same short trials through a bare Tuner (FIFO, the data bound with
# tune.with_parameters, one report per epoch, no checkpoint, no searcher): what Ray Tune itself costs
PLAIN_TUNE = r'''
import json, sys, tempfile, time
started = time.perf_counter()
import ray
from ray import tune
from search.config import resolve
from vae import DataConfig, ModelConfig, TrainConfig, load_data, train
n_trials = int(sys.argv[1])
preset = resolve("smoke", {"epochs": 1, "max_train": 500})
splits = load_data(DataConfig(dataset="sample", max_train=500)).for_training()
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=40)
def trainable(config, splits):
    model = ModelConfig(latent_dim=config["latent_dim"], channels=preset.channels, hidden_dim=preset.hidden_dim)
    train(TrainConfig(model=model, lr=config["lr"], epochs=1, batch_size=preset.batch_size, threads=1), splits,
          on_epoch=lambda result, state: tune.report({"psnr_mean": result.psnr_mean}))
space = {"latent_dim": tune.choice([2, 8]), "lr": tune.loguniform(*preset.lr_range)}
with tempfile.TemporaryDirectory() as folder:
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, splits=splits), {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(num_samples=n_trials, reuse_actors=True, metric="psnr_mean", mode="max"),
        run_config=tune.RunConfig(storage_path=folder, verbose=0))
    tuner.fit()
ray.shutdown()
print(json.dumps({"wall_s": time.perf_counter() - started}))
'''

def short_once(code: Path, storage: Path, name: str) -> dict:
    run = run_driver(code, ["run", *SHORT, "--storage", str(storage), "--name", name])
    m, wall0, perf0 = run["marks"], run["wall0"], run["perf0"]
    t = trials(storage, name)
    at = lambda unix: unix - wall0 + perf0  # noqa: E731 (a trial's Unix time on the driver's clock)
    first_start, last_end = at(t["started_at"].min()), at(t["finished_at"].max())
    setup = t["time_s"] - t["train_time_s"]  # Tune's time of the trial minus its epochs
    parts = {
        "imports": m["ray_start_begin"] - m["start"],
        "ray_start": m["ray_started"] - m["ray_start_begin"],
        "data_and_experiment": m["execute_begin"] - m["ray_started"],
        "to_first_trial": first_start - m["execute_begin"],
        "trials_span": last_end - first_start,
        "after_last_trial": m["tables_begin"] - last_end,
        "tables": m["tables_end"] - m["tables_begin"],
        "until_report": m["report_begin"] - m["tables_end"],  # the rest of execute, Ray's shutdown
        "report": m["report_end"] - m["report_begin"],
        "exit": run["wall_s"] - (m["report_end"] - m["start"]),  # interpreter start and exit
    }
    return {
        "wall_s": run["wall_s"],
        "driver_cpu_s": run["cpu_s"],
        "trials": len(t),
        "train_s": float(t["train_time_s"].sum()),
        "trial_setup_first_s": float(setup.max()),
        "trial_setup_median_s": float(setup.median()),
        "parts_s": parts,
    }


def optuna_once(code: Path, n_trials: int) -> dict:
    out = subprocess.run(
        [_python(code), "-c", OPTUNA, str(n_trials), "2,8"],
        cwd=code,
        env=_env(code),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": data["wall"], "train_s": sum(data["train_times"])}


def bare_once(code: Path, lrs: list[float], concurrency: int) -> float:
    started = time.perf_counter()
    shares = [lrs[i::concurrency] for i in range(concurrency)]  # equal trials: equal shares
    procs = [
        subprocess.Popen([_python(code), "-c", BARE_WORKER, *map(str, share)], cwd=code, env=_env(code))
        for share in shares
    ]
    if any(proc.wait() != 0 for proc in procs):
        raise RuntimeError("a bare worker failed")
    return time.perf_counter() - started


def plain_tune_once(code: Path, n_trials: int) -> dict:
    out = subprocess.run(
        [_python(code), "-c", PLAIN_TUNE, str(n_trials)],
        cwd=code,
        env=_env(code),
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def joining(args: list[str], address: str | None) -> list[str]:
    """`args` with `--num-cpus N` replaced by `--address ADDRESS` when one is given."""
    if not address:
        return args
    at = args.index("--num-cpus")
    return [*args[:at], "--address", address, *args[at + 2:]]


def tool_bare_once(code: Path, storage: Path, name: str, concurrency: int,
                   address: str | None = None) -> tuple[float, list[float]]:
    run = run_driver(code, ["run", *joining(BARE, address), "--max-concurrent", str(concurrency), "--storage",
                            str(storage), "--name", name])
    return run["wall_s"], [float(x) for x in trials(storage, name)["lr"]]


def quick_once(code: Path, storage: Path, name: str, address: str | None = None) -> dict:
    """The default quick preset (`--seed 0`): the share of the cores' time its trials hold; with
    `address`, joining that running Ray (2 CPUs) instead of starting its own."""
    args = joining(["run", "--preset", "quick", "--seed", "0", "--num-cpus", "2"], address)
    run = run_driver(code, [*args, "--storage", str(storage), "--name", name])
    m = run["marks"]
    t = trials(storage, name)
    cores, experiment = 2, m["execute_end"] - m["execute_begin"]
    return {
        "wall_s": run["wall_s"],
        "experiment_s": experiment,
        "trials": len(t),
        "driver_cpu_s": run["cpu_s"],
        "trials_share_of_experiment": float(t["time_s"].sum()) / (cores * experiment),
        "trials_share_of_wall": float(t["time_s"].sum()) / (cores * run["wall_s"]),
        "training_share_of_wall": float(t["train_time_s"].sum()) / (cores * run["wall_s"]),
        # between the first trial's start and the last one's end: the trials' own spans over the cores'
        "busy_in_trials_span": float((t["finished_at"] - t["started_at"]).sum())
        / (cores * float(t["finished_at"].max() - t["started_at"].min())),
        "driver_cpu_share_of_a_core": run["cpu_s"] / run["wall_s"],
        "chosen": next((line for line in run["stdout"].splitlines() if line.startswith("chosen latent size")), None),
    }


def _alternate(sides: dict[str, Path], repeats: int, label: str, once) -> dict[str, list[dict]]:
    """`once(side, code, i)` for each repeat, the sides alternating; printed as they come."""
    rows: dict[str, list[dict]] = {side: [] for side in sides}
    for i in range(repeats):
        for side, code in sides.items():
            rows[side].append(once(side, code, i))
            print(f"{label} {side} {i + 1}: {json.dumps(rows[side][-1])}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout, measured alternately")
    parser.add_argument("--python", help="the interpreter to run this checkout with (default: this one), e.g. the "
                        "virtual environment `make run` installs")
    parser.add_argument("--baseline-python", help="the interpreter to run the baseline with (default: this one)")
    parser.add_argument("--parts", default="short,bare,memory,storage,checkpoint")
    parser.add_argument("--name", default="overhead")
    parser.add_argument("--warm", action="store_true", help="the bare and quick parts' runs join a running Ray "
                        "(`ray start --head`, 2 CPUs, started here, one smoke run on it first) instead of starting "
                        "their own")
    args = parser.parse_args()
    sides = {"baseline": args.baseline.resolve(), "ours": ROOT} if args.baseline else {"ours": ROOT}
    parts = args.parts.split(",")
    PYTHON.update({ROOT: args.python or sys.executable, **({sides["baseline"]: args.baseline_python or sys.executable}
                                                          if args.baseline else {})})
    figures: dict = {"repeats": args.repeats, "baseline": str(args.baseline) if args.baseline else None, "parts": parts,
                     "python": {side: PYTHON[code] for side, code in sides.items()}}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        storage = Path(tmp)
        figures["warm"] = args.warm
        address = None
        if args.warm:
            os.environ["RAY_AUTH_MODE"] = "token"  # a client sends the head's token only with it
            address = stack.enter_context(ray_head(storage))
            for side, code in sides.items():  # each side's first driver on the head: not measured
                run_driver(code, ["run", "--preset", "smoke", "--address", address, "--storage", str(storage),
                                  "--name", f"warm-up-{side}"])
        if "short" in parts:
            rows = {side: {"tool": [], "optuna": [], "plain_tune": []} for side in sides}
            for i in range(args.repeats):
                for side, code in sides.items():
                    rows[side]["tool"].append(short_once(code, storage, f"short-{side}-{i}"))
                    rows[side]["optuna"].append(optuna_once(code, rows[side]["tool"][-1]["trials"]))
                    rows[side]["plain_tune"].append(plain_tune_once(code, rows[side]["tool"][-1]["trials"]))
                    print(f"short {side} {i + 1}: tool {rows[side]['tool'][-1]['wall_s']:.1f} s, "
                          f"optuna {rows[side]['optuna'][-1]['wall_s']:.1f} s, "
                          f"plain Tune {rows[side]['plain_tune'][-1]['wall_s']:.1f} s", flush=True)
            figures["short"] = {side: _short_summary(r) for side, r in rows.items()}
        if "bare" in parts:
            rows = {side: {c: {"tool": [], "bare": []} for c in (1, 2)} for side in sides}
            for i in range(args.repeats):
                for side, code in sides.items():
                    for c in (1, 2):
                        wall, lrs = tool_bare_once(code, storage, f"bare-{side}-{c}-{i}", c, address)
                        rows[side][c]["tool"].append(wall)
                        rows[side][c]["bare"].append(bare_once(code, lrs, c))
                        print(f"bare {side} c{c} {i + 1}: tool {wall:.1f} s, bare {rows[side][c]['bare'][-1]:.1f} s",
                              flush=True)
            figures["bare"] = {side: {f"concurrency_{c}": {"tool_wall_s": median(r[c]["tool"]),
                                                           "bare_wall_s": median(r[c]["bare"]),
                                                           "ratio": median(r[c]["tool"]) / median(r[c]["bare"]),
                                                           "runs": r[c]} for c in (1, 2)}
                               for side, r in rows.items()}
        if "memory" in parts:
            if not (MNIST_FULL / "unpack").exists():
                sys.exit(f"the memory part needs the full MNIST at {MNIST_FULL}")
            data_dir = storage / "data"
            subprocess.run([str(MNIST_FULL / "unpack"), str(data_dir)], check=True, capture_output=True)
            rows = _alternate(sides, max(1, args.repeats // 2), "memory",
                              lambda side, code, i: memory_once(code, storage, f"memory-{side}-{i}", data_dir))
            figures["memory"] = {side: {"largest_over_floor_mb": median([r["largest_over_floor_mb"] for r in rs]),
                                        "largest_worker_pss_mb": median([max(r["worker_peak_pss_mb"]) for r in rs]),
                                        "floor_pss_mb": median([r["floor_pss_mb"] for r in rs]), "runs": rs}
                                 for side, rs in rows.items()}
        if "checkpoint" in parts:
            figures["checkpoint"] = {side: checkpoint_once(code) for side, code in sides.items()}
            print(f"checkpoint: {json.dumps(figures['checkpoint'])}", flush=True)
        if "quick" in parts:
            rows = _alternate(sides, max(1, args.repeats // 3), "quick",
                              lambda side, code, i: quick_once(code, storage, f"quick-{side}-{i}", address))
            figures["quick"] = {
                side: {k: median([r[k] for r in rs]) for k in rs[0] if isinstance(rs[0][k], float)} | {"runs": rs}
                for side, rs in rows.items()
            }
        if "storage" in parts:
            rows = _alternate(sides, max(1, args.repeats // 2), "storage",
                              lambda side, code, i: storage_once(code, storage, f"storage-{side}-{i}"))
            figures["storage"] = {side: {"peak_over_final": median([r["peak_over_final"] for r in rs]), "runs": rs}
                                  for side, rs in rows.items()}
    figures["targets"] = {"short_ratio_vs_optuna": "<= 1.5 (moonshot 1.25)", "bare_ratio_concurrency_2": "<= 1.25",
                          "largest_worker_over_floor_mb": "<= 250", "storage_peak_over_final": "<= 2",
                          "quick_trials_share_of_cores": ">= 0.95"}
    write(args.name, figures)


def _short_summary(rows: dict) -> dict:
    tool, theirs = rows["tool"], rows["optuna"]
    return {
        "tool_wall_s": median([r["wall_s"] for r in tool]),
        "optuna_wall_s": median([r["wall_s"] for r in theirs]),
        "ratio": median([r["wall_s"] for r in tool]) / median([r["wall_s"] for r in theirs]),
        "plain_tune_wall_s": median([r["wall_s"] for r in rows["plain_tune"]]),
        "ratio_vs_plain_tune": median([r["wall_s"] for r in tool]) / median([r["wall_s"] for r in rows["plain_tune"]]),
        "driver_cpu_s": median([r["driver_cpu_s"] for r in tool]),
        "trial_setup_first_s": median([r["trial_setup_first_s"] for r in tool]),
        "trial_setup_median_s": median([r["trial_setup_median_s"] for r in tool]),
        "parts_s": {k: median([r["parts_s"][k] for r in tool]) for k in tool[0]["parts_s"]},
        "runs": rows,
    }


if __name__ == "__main__":
    main()
