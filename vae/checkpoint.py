"""Checkpoints: weights and the resolved config side by side, loaded without pickle code.

A model folder holds `model.pt` (a state dict, loaded with `weights_only=True`) and
`config.json` (the resolved `TrainConfig`). A training checkpoint adds `state.pt`
(optimizer, completed epochs, per-epoch history, RNG state) so a retried trial resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vae.config import TrainConfig
from vae.errors import DataError
from vae.files import atomic_write, atomic_write_text
from vae.model import ConvVAE

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
STATE_FILE = "state.pt"
FUSED_FILE = "fused.pt"  # a fused group's checkpoint: every member's weights, optimizer and noise streams


def save_model(directory: str | Path, model: ConvVAE, config: TrainConfig) -> None:
    """Write `model.pt` and `config.json` into `directory`."""
    directory = Path(directory)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / MODEL_FILE, lambda handle: torch.save(weights, handle))
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def load_config(path: str | Path) -> TrainConfig:
    folder = _folder(path)
    file = folder / CONFIG_FILE
    try:
        return TrainConfig.from_dict(json.loads(file.read_text()))
    except FileNotFoundError:
        raise DataError(f"missing {file}: not a model folder written by vae-search") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"corrupt {file}: {exc}") from None


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> ConvVAE:
    """Restore a model from a folder holding `model.pt` and `config.json` (or from `model.pt`).

    Weights load with `weights_only=True`: a crafted pickle is refused, never executed.
    """
    config = load_config(path)
    model = ConvVAE(config.model)
    model.load_state_dict(load_weights(path, map_location))
    return model.eval()


def save_state(directory: str | Path, model: ConvVAE, config: TrainConfig, state: dict[str, Any]) -> None:
    """A training checkpoint: the model folder plus `state.pt` (see `vae.training.TrainState`)."""
    save_model(directory, model, config)
    atomic_write(Path(directory) / STATE_FILE, lambda handle: torch.save(state, handle))


def load_state(directory: str | Path) -> dict[str, Any]:
    return _load_tensors(Path(directory) / STATE_FILE, "cpu")


def save_fused(directory: str | Path, state: dict[str, Any]) -> None:
    """Write a fused group's state (`vae.fused.FusedState.to_dict`) as `fused.pt` in `directory`."""
    atomic_write(Path(directory) / FUSED_FILE, lambda handle: torch.save(state, handle))


def load_fused(directory: str | Path) -> dict[str, Any]:
    return _load_tensors(Path(directory) / FUSED_FILE, "cpu")


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in a model folder (or `model.pt`), loaded with `weights_only=True`."""
    return _load_tensors(_folder(path) / MODEL_FILE, map_location)


def _load_tensors(file: Path, map_location: str | torch.device) -> Any:
    if not file.exists():
        raise DataError(f"missing checkpoint file {file}")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"refused to load {file}: {first}") from None


def _folder(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.suffix == ".pt" else path
