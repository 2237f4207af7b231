"""Does the decision confidence mean what it says? Simulated races with a known answer.

Each scenario fixes the true mean PSNR and the per-seed SD of every latent size. A race draws
`--seeds` seeds trials per size, then runs the racing loop through the project's own code
(`analysis.racing.assess` for the decision and `analysis.racing.next_trial` for the next seed),
one seed at a time, until the confidence reaches `--target`, every contender has `--max-seeds`,
or nothing is left to do. The right answer is the rule's answer on the true means
(`analysis.selection.choose` with a zero SE). Per scenario it prints the accuracy, the mean reported
confidence, P(right | confidence >= c) and the share of races reaching c for c = 0.8, 0.9,
0.95, and the seeds per size. `--drift` adds the rule's answer at a fixed number of seeds per
size, without racing, for the rule and for one-se (whose answer moves with the seeds).

With --baseline DIR (another checkout, e.g. `git worktree add /tmp/before REV`), the same races
run first through that checkout's `assess` and its searcher's racing loop (fewest seeds among
the contenders, then the largest SE), in a subprocess, side by side in the output.

Scenarios: `tie` (15 and 20 equal: the answer is 15), `boundary` (15 exactly `tolerance_db`
below 20: the answer is 15, by the rule's >=; no method can be sure here), `clear` (1.3 dB
steps: 20), `spread-boundary` / `spread-near` / `spread-away` / `spread-edge` (seed SDs 3x
apart between sizes, as six quick-preset seeds per size showed; the size 10 on, just inside and
well outside the tolerance of the best), and `quick` / `full`, the per-size means and seed SDs measured by
bench/seed_spread.py on the quick preset and on the full MNIST (means of the full scenario
from bench/study_budget.py's validation PSNR).

`--group k` hands racing's seeds out k at a time, as fused trials of k members would (the look
comes when the group has finished): what a decision costs in seeds trials fused against unfused.

`--metric nll` races the held-out likelihood instead, lower being better, with the tolerance in
nats (`--tolerance-nats`, default the rule's): scenarios `quick-nll` and `quick-nll-uncertain`
take the per-size means and seed SDs of nll_iw that bench/seed_spread.py measured on the quick
preset (`seed_spread_quick_likelihood.json`, k = 16), and `nll-tie` puts 15 and 20 level.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _common import write
from _scenarios import _scenarios

LEVELS = (0.8, 0.9, 0.95)


def _truth(means: dict[int, float], rule: str, tolerance_db: float, metric: str = "psnr") -> int:
    """The rule on the true means (a zero SE: what infinitely many seeds would show)."""
    from analysis.selection import choose

    dims = np.array(sorted(means))
    extra = {"metric": metric} if metric != "psnr" else {}
    return choose(dims, np.array([means[d] for d in dims]), np.zeros(len(dims)), rule=rule, tolerance=tolerance_db,
                  **extra).latent_dim


def _assess(values, scenario: dict, **settings):
    """`assess` on the scenario's metric; a tolerance given as tolerance_db is in its unit."""
    from analysis.racing import assess

    if scenario.get("metric", "psnr") == "psnr":
        return assess(values, **settings)
    return assess(values, metric=scenario["metric"], tolerance_nats=settings.pop("tolerance_db"), **settings)


def _true_means(scenario: dict, rng: np.random.Generator) -> dict[int, float]:
    spread = scenario.get("truth_se")
    return {d: m + (spread[d] * rng.standard_normal() if spread else 0.0) for d, m in scenario["means"].items()}


def _step(race, handed: dict[int, int], target: float, max_seeds: int) -> int | None:
    """The racing loop's decision: the project's `next_trial`, or a checkout's that predates it
    (its searcher's loop: the contender with the fewest seeds, then the largest SE)."""
    try:
        from analysis.racing import next_trial
    except ImportError:
        from analysis.racing import mean_se  # noqa: F401 (the baseline's module)

        if race.latent_dim is None or race.confidence >= target:
            return None
        room = [d for d in race.contenders if handed[d] < max_seeds]
        return min(room, key=lambda d: (handed[d], -_BASELINE_SE.get(d, math.inf), d)) if room else None
    step = next_trial(race, handed, target=target, max_seeds=max_seeds, budget_left=True)
    return step.latent_dim


_BASELINE_SE: dict[int, float] = {}


def _race(job: tuple) -> dict:
    """One race; with `extend_to`, a race that stopped at --max-seeds below the target is raced on
    once more to `extend_to` seeds per size, as `vae-search resume EXP --max-seeds N` does: the
    same values, the horizon (and so the discount) now (--seeds, N)."""
    from analysis.racing import assess, mean_se

    scenario, rule, tolerance_db, seeds, max_seeds, target, race_seed, discount, *rest = job
    extend_to, plan, group = (rest + [None, None, None])[:3]
    plan = plan or max_seeds  # the horizon the discount is planned for
    rng = np.random.default_rng(race_seed)
    means = _true_means(scenario, rng)
    dims = sorted(means)
    values = {d: list(means[d] + scenario["sds"][d] * rng.standard_normal(seeds)) for d in dims}
    extended = False
    while True:
        try:
            race = _assess(values, scenario, rule=rule, tolerance_db=tolerance_db, seed=race_seed,
                           horizon=(seeds, max(plan, max_seeds)) if discount else None)
        except TypeError:  # a checkout whose assess predates the horizon
            race = assess(values, rule=rule, tolerance_db=tolerance_db, seed=race_seed)
        _BASELINE_SE.clear()
        _BASELINE_SE.update({d: (mean_se(v)[1] if len(v) > 1 else math.inf) for d, v in values.items()})
        dim = _step(race, {d: len(v) for d, v in values.items()}, target, max_seeds)
        if dim is None:
            if extend_to and not extended and race.latent_dim is not None and race.confidence < target:
                extended, max_seeds = True, extend_to  # the user races on from the finished experiment
                continue
            break
        # a fused trial of `group` members: that many seeds of the size at once (within --max-seeds)
        for _ in range(min(group or 1, max_seeds - len(values[dim]))):
            values[dim].append(means[dim] + scenario["sds"][dim] * rng.standard_normal())
    return {
        "right": race.latent_dim == _truth(means, rule, tolerance_db, scenario.get("metric", "psnr")),
        "confidence": race.confidence,
        "seeds": sum(len(v) for v in values.values()) / len(dims),
        "extended": extended,
    }


def _fixed(job: tuple) -> dict:
    """No racing: n seeds per size, the rule's choice and confidence."""

    scenario, rule, tolerance_db, n, race_seed = job
    rng = np.random.default_rng(race_seed)
    means = _true_means(scenario, rng)
    values = {d: list(means[d] + scenario["sds"][d] * rng.standard_normal(n)) for d in sorted(means)}
    race = _assess(values, scenario, rule=rule, tolerance_db=tolerance_db, seed=race_seed)
    return {"right": race.latent_dim == _truth(means, rule, tolerance_db, scenario.get("metric", "psnr")),
            "confidence": race.confidence}


def _summary(rows: list[dict]) -> dict:
    right = np.array([r["right"] for r in rows])
    confidence = np.array([r["confidence"] for r in rows])
    out = {"races": len(rows), "accuracy": float(right.mean()), "mean_confidence": float(confidence.mean()),
           "calibration_gap": float(confidence.mean() - right.mean())}
    for level in LEVELS:
        sure = confidence >= level
        out[f"share_conf_ge_{level}"] = float(sure.mean())
        out[f"p_right_given_conf_ge_{level}"] = float(right[sure].mean()) if sure.any() else None
        out[f"p_wrong_and_conf_ge_{level}"] = float((sure & ~right).mean())
    if "extended" in rows[0]:
        out["share_extended"] = float(np.mean([r["extended"] for r in rows]))
    if "seeds" in rows[0]:
        seeds = np.array([r["seeds"] for r in rows])
        out["seeds_per_size_mean"] = float(seeds.mean())
        reached = confidence >= 0.9
        out["seeds_per_size_when_conf_ge_0.9"] = float(seeds[reached].mean()) if reached.any() else None
    return out


def _set_prior_df(prior_df: float | None) -> None:
    """In each worker: the spread prior's degrees of freedom to race with (None: the project's)."""
    if prior_df is not None:
        import analysis.racing

        analysis.racing.SPREAD_PRIOR_DF = prior_df


def run_engine(args: argparse.Namespace, rules: list[str]) -> dict:
    """Every scenario through whichever `analysis` package is importable."""
    import analysis

    results: dict = {"analysis_package": str(Path(analysis.__file__).parent)}
    prior_df = getattr(args, "prior_df", None)
    with ProcessPoolExecutor(args.workers, initializer=_set_prior_df, initargs=(prior_df,)) as pool:
        for name, scenario in _scenarios(args).items():
            for rule in rules:
                jobs = [
                    (
                        scenario,
                        rule,
                        args.tolerance_db,
                        args.seeds,
                        args.max_seeds,
                        args.target,
                        10_000 + i,
                        not args.no_discount,
                        args.extend_to,
                        args.plan_for,
                        getattr(args, "group", None),
                    )
                    for i in range(args.races)
                ]
                started = time.perf_counter()
                summary = {"truth": _truth(scenario["means"], rule, args.tolerance_db, scenario.get("metric", "psnr")),
                           **_summary(list(pool.map(_race, jobs, chunksize=8)))}
                summary["seconds"] = time.perf_counter() - started
                results[f"{name}/{rule}"] = summary
                print(
                    name,
                    rule,
                    json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()}),
                    flush=True,
                )
                if args.drift:
                    for n in (2, 4, 8, 16, 32):
                        jobs = [(scenario, rule, args.tolerance_db, n, 20_000 + i) for i in range(args.drift_races)]
                        results[f"{name}/{rule}/fixed{n}"] = _summary(list(pool.map(_fixed, jobs, chunksize=16)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--races", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per size before racing")
    parser.add_argument("--max-seeds", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--tolerance-db", type=float, default=None, help="default: the rule's default")
    parser.add_argument("--drift", action="store_true", help="also the answer at 2..32 fixed seeds per size")
    parser.add_argument("--drift-races", type=int, default=1000)
    parser.add_argument("--baseline", type=Path, help="another checkout, run the same way first")
    parser.add_argument("--baseline-races", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-discount", action="store_true",
                        help="race on the posterior itself, without the discount for racing's looks (what it buys)")
    parser.add_argument("--extend-to", type=int, default=None,
                        help="race on once, to this many seeds per size, the races that stopped at --max-seeds below "
                             "the target (vae-search resume EXP --max-seeds N)")
    parser.add_argument("--plan-for", type=int, default=None,
                        help="the discount's horizon is (--seeds, this) from the first look (default: --max-seeds)")
    parser.add_argument("--name", default="calibration", help="results name (bench/results/NAME.json)")
    parser.add_argument("--engine-only", type=Path, help=argparse.SUPPRESS)  # the baseline's subprocess writes here
    parser.add_argument("--rules", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--metric", default="psnr", choices=["psnr", "nll"], help="nll: the nll_iw scenarios")
    parser.add_argument("--tolerance-nats", type=float, default=None, help="--metric nll (default: the rule's)")
    parser.add_argument("--scenarios", default=None, help="comma-separated scenario names (default: all)")
    parser.add_argument("--group", type=int, default=None,
                        help="racing hands out this many seeds of a contender at once (a fused trial's members)")
    parser.add_argument("--prior-df", type=float, default=None,
                        help="race with this analysis.racing.SPREAD_PRIOR_DF (inf: one pooled SD for all sizes)")
    args = parser.parse_args()
    if args.metric == "nll":
        from analysis.rules import DEFAULT_TOLERANCE_NATS

        # the races read one tolerance, in the scenario's unit
        args.tolerance_db = DEFAULT_TOLERANCE_NATS if args.tolerance_nats is None else args.tolerance_nats
    if args.tolerance_db is None:
        try:
            from analysis.rules import DEFAULT_TOLERANCE_DB
        except ImportError:
            DEFAULT_TOLERANCE_DB = 0.3
        args.tolerance_db = DEFAULT_TOLERANCE_DB

    if args.engine_only:
        args.engine_only.write_text(json.dumps(run_engine(args, args.rules.split(","))))
        return

    from analysis.rules import DEFAULT_RULE

    settings = ("races", "seeds", "max_seeds", "extend_to", "plan_for", "target", "tolerance_db", "prior_df", "group")
    figures: dict = {
        "settings": {**{key: getattr(args, key) for key in settings}, "discount": not args.no_discount},
        "metric": args.metric,
        "scenarios": _scenarios(args),
    }
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "baseline.json"
            env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
            command = [sys.executable, str(Path(__file__).resolve()), "--engine-only", str(out), "--rules",
                       f"one-se,{DEFAULT_RULE}", "--races", str(args.baseline_races), "--seeds", str(args.seeds),
                       "--max-seeds", str(args.max_seeds), "--target", str(args.target), "--tolerance-db",
                       str(args.tolerance_db), "--workers", str(args.workers),
                       *(["--scenarios", args.scenarios] if args.scenarios else [])]
            print("baseline:", args.baseline, flush=True)
            subprocess.run(command, check=True, env=env, cwd=args.baseline)
            figures["baseline"] = json.loads(out.read_text())
    print("ours:", flush=True)
    figures["ours"] = run_engine(args, [DEFAULT_RULE, "one-se"] if args.drift else [DEFAULT_RULE])
    write(args.name, figures)


if __name__ == "__main__":
    main()
