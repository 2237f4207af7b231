"""Typed, frozen configurations for data, model and training, validated on construction.

Ray's dicts stop at the trial boundary: a trial builds these first, so an unknown or
malformed key fails loudly (`from_dict`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from vae.errors import UsageError

DATASETS = ("auto", "mnist", "sample")
N_CLASSES = 10  # MNIST's digits: the per-digit metrics and every per-digit column count these
LR_SCHEDULES = ("onecycle", "constant")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "auto"  # auto | mnist | sample
    data_dir: str = "data"  # where torchvision keeps (or downloads) MNIST
    # Cap on training images (stratified subset); None = the whole training split.
    max_train: int | None = None
    split_seed: int = 0  # the train/validation split is fixed by this, not by the trial seed

    def __post_init__(self) -> None:
        _check(self.dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)} but got {self.dataset!r}")
        _check(
            self.max_train is None or (isinstance(self.max_train, int) and self.max_train >= 10),
            f"max_train must be an integer >= 10 or None but got {self.max_train!r}",
        )


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 15
    channels: tuple[int, int] = (32, 64)  # conv widths at 14x14 and 7x7
    hidden_dim: int = 256  # fully connected layer between the convs and the latent code

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        _check(
            isinstance(self.latent_dim, int) and not isinstance(self.latent_dim, bool) and self.latent_dim >= 1,
            f"latent_dim must be a positive integer but got {self.latent_dim!r}",
        )
        _check(
            len(self.channels) == 2 and all(isinstance(c, int) and c >= 1 for c in self.channels),
            f"channels must be two positive integers but got {self.channels!r}",
        )
        _check(
            isinstance(self.hidden_dim, int) and self.hidden_dim >= 1,
            f"hidden_dim must be a positive integer but got {self.hidden_dim!r}",
        )


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lr: float = 3e-3  # the peak learning rate of the schedule
    # onecycle: torch's OneCycleLR over all epochs (warm up to `lr`, then anneal); constant: `lr` throughout
    lr_schedule: str = "onecycle"
    # Weight of the KL term. The KL is summed over latent dimensions (never averaged), so
    # beta = 1 is the ELBO at every latent size and beta means the same thing for all of them.
    beta: float = 1.0
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    threads: int = 1  # torch intra-op threads; a trial sets it to its CPU share
    device: str = "cpu"
    # torch's deterministic algorithms (and the cuBLAS workspace they need on CUDA): repeatable
    # runs on a GPU, at some speed; on a CPU runs repeat without it
    deterministic: bool = False
    # the training step's forward and backward captured once as CUDA graphs and replayed
    # (`vae.graphs`); CUDA devices only
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        _check(
            isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
            f"lr must be a positive number but got {self.lr!r}",
        )
        _check(
            self.lr_schedule in LR_SCHEDULES,
            f"lr_schedule must be one of {', '.join(LR_SCHEDULES)} but got {self.lr_schedule!r}",
        )
        _check(
            isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0,
            f"beta must be a number >= 0 but got {self.beta!r}",
        )
        _check(
            isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be an integer >= 1 but got {self.epochs!r}"
        )
        _check(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            f"batch_size must be an integer >= 1 but got {self.batch_size!r}",
        )
        _check(isinstance(self.seed, int), f"seed must be an integer but got {self.seed!r}")
        _check(
            isinstance(self.threads, int) and self.threads >= 1,
            f"threads must be an integer >= 1 but got {self.threads!r}",
        )
        _check(
            isinstance(self.deterministic, bool), f"deterministic must be true or false but got {self.deterministic!r}"
        )
        _check(isinstance(self.cuda_graphs, bool), f"cuda_graphs must be true or false but got {self.cuda_graphs!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (`from_dict` inverts it)."""
        out = dataclasses.asdict(self)
        out["model"]["channels"] = list(self.model.channels)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a plain dict; unknown keys raise `UsageError`."""
        values = dict(values)
        model = _build(ModelConfig, values.pop("model", {}))
        data = _build(DataConfig, values.pop("data", {}))
        return _build(cls, {**values, "model": model, "data": data})


def _build(kind: type, values: Mapping[str, Any] | Any) -> Any:
    if isinstance(values, kind):
        return values
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    _check(not unknown, f"unknown {kind.__name__} key(s): {', '.join(unknown)}")
    return kind(**values)
