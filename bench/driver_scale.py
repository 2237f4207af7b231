"""Scale of one driver, for clusters this machine cannot hold.

1. Results per second: zero-cost trials (no training) that call `tune.report` as fast as they
   can, through the run's own searcher, scheduler and callbacks; the driver's throughput is
   the number of results it processed per second of `Tuner.fit`.
2. Trials per second: one-result zero-cost trials, through the same stack.
3. TPE's suggest time (the sampler the searcher uses) with 100, 1,000 and 5,000 finished trials
   in the study, in memory and in a journal file as a run keeps it.

From these, the largest cluster one driver keeps busy: with paper-sized trials (20 epochs, one
result per epoch, T seconds each) and S slots, the driver must handle S x 20 / T results and
S / T suggestions per second.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from _common import median, write


def _zero_cost_trainable(config):
    from ray import tune

    for i in range(config["n_results"]):
        tune.report({"psnr_mean": 10.0 + config["lr"] * i, "training_iteration_hint": i})


def throughput(n_results: int, n_trials: int, num_cpus: int) -> dict:
    """Run zero-cost trials through the project's searcher + scheduler + callbacks."""
    import ray
    from ray import tune

    from search.config import SearchConfig
    from search.engine.progress import Progress
    from search.engine.scheduling import scheduler
    from search.engine.searcher import StagedSearcher

    config = SearchConfig(latent_dims=(2, 8), trials=n_trials, seeds=1, max_seeds=1, epochs=n_results, scheduler="fifo",
                          num_cpus=num_cpus)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        searcher = StagedSearcher(config, experiment=path)
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(num_cpus)
        tuner = tune.Tuner(
            tune.with_resources(_zero_cost_trainable, {"cpu": 1}),
            param_space={"n_results": n_results},
            tune_config=tune.TuneConfig(
                metric="psnr_mean",
                mode="max",
                search_alg=searcher,
                scheduler=scheduler(config),
                num_samples=-1,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(path),
                verbose=0,
                callbacks=[
                    Progress(
                        str(path),
                        searcher,
                        storage_uri=None,
                        minimum_trials=n_trials,
                        per_trial={"cpus": 1, "gpus": 0, "max_concurrent": num_cpus},
                        epochs=n_results,
                    )
                ],
            ),
        )
        started = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - started
    trials = len(grid)
    results = trials * n_results
    return {"trials": trials, "results_per_trial": n_results, "wall_s": wall, "results_per_s": results / wall,
            "trials_per_s": trials / wall, "ray": ray.__version__}


def suggest_times(sizes: list[int], asks: int) -> dict:
    import optuna

    from search.engine.study import journal_storage, make_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    space = {"latent_dim": optuna.distributions.CategoricalDistribution([5, 10, 15, 20]),
             "lr": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)}
    out = {}
    for storage_kind in ("memory", "journal"):
        for n in sizes:
            with tempfile.TemporaryDirectory() as folder:
                storage = None if storage_kind == "memory" else journal_storage(Path(folder) / "optuna.journal")
                study = optuna.create_study(direction="maximize", sampler=make_sampler(0), storage=storage)
                import random

                rng = random.Random(0)
                trials = []
                for _ in range(n):
                    params = {
                        "latent_dim": rng.choice([5, 10, 15, 20]),
                        "lr": math.exp(rng.uniform(math.log(1e-4), math.log(3e-3))),
                    }
                    trials.append(
                        optuna.trial.create_trial(
                            params=params,
                            distributions=space,
                            value=15 + params["latent_dim"] / 5 - abs(math.log(params["lr"] / 1e-3)),
                        )
                    )
                study.add_trials(trials)
                times = []
                for _ in range(asks):
                    started = time.perf_counter()
                    trial = study.ask(space)
                    times.append(time.perf_counter() - started)
                    study.tell(trial, 15.0)
                out[f"{storage_kind}_{n}"] = statistics.median(times)
                print(
                    f"TPE suggest, {storage_kind}, {n} finished trials: {out[f'{storage_kind}_{n}'] * 1000:.1f} ms",
                    flush=True,
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--asks", type=int, default=15)
    args = parser.parse_args()
    import ray

    from search.config import SearchConfig
    from search.engine.session import driver_session

    many_results, many_trials = [], []
    with driver_session(SearchConfig(num_cpus=args.num_cpus), None):
        for i in range(args.repeats):
            many_results.append(throughput(n_results=500, n_trials=args.num_cpus, num_cpus=args.num_cpus))
            many_trials.append(throughput(n_results=1, n_trials=100, num_cpus=args.num_cpus))
            print(f"repeat {i + 1}: {many_results[-1]['results_per_s']:.0f} results/s, "
                  f"{many_trials[-1]['trials_per_s']:.1f} trials/s", flush=True)
    assert not ray.is_initialized()
    suggest = suggest_times([100, 1000, 5000], args.asks)
    results_per_s = median([r["results_per_s"] for r in many_results])
    trials_per_s = median([r["trials_per_s"] for r in many_trials])
    # paper-sized trials: 20 epochs of 48,000 images; on a g5.xlarge quarter GPU about 60 s per
    # epoch is an estimate (not measured here), so one trial is ~1,200 s and reports 20 results
    trial_s, results_per_trial = 1200.0, 20
    suggest_5000 = suggest["journal_5000"]
    slots_by_results = results_per_s * trial_s / results_per_trial
    slots_by_trials = trials_per_s * trial_s
    slots_by_suggest = trial_s / suggest_5000
    write("driver_scale", {
        "goal": ">= 50 results/s from one driver",
        "results_per_s": results_per_s, "trials_per_s": trials_per_s,
        "throughput_runs": many_results, "trial_runs": many_trials,
        "tpe_suggest_median_s": suggest,
        "paper_trial_assumption_s": trial_s,
        "slots_one_driver_keeps_busy": {"by_results": slots_by_results, "by_trial_turnover": slots_by_trials,
                                        "by_tpe_suggest_at_5000": slots_by_suggest},
        "met": results_per_s >= 50,
    })


if __name__ == "__main__":
    main()
